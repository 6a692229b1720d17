"""Python FastStream on both ends of the imported Rust services, on a real Kafka broker (used
by faststream-cli/tests/import.rs): a producer publishes each app's input where the Python
service used to read it, a consumer reads the Rust service's output (or the reply) and
validates it with the Python app's own model. Records are matched by correlation id, so
earlier runs' records on the same topics do not count.

    kafka_check.py BOOTSTRAP

Prints `<app> ok` per app, or what is missing after the timeout and exits 1.
"""

import asyncio
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import TypeAdapter

from batch import Event
from models import Invoice, Item, Order
from router import Registered

TIMEOUT = 60


async def main(bootstrap: str) -> int:
    run = uuid.uuid4().hex
    broker = KafkaBroker(bootstrap)
    expected: dict[str, tuple[str, Any]] = {}  # correlation id -> (app, validator)
    done: dict[str, asyncio.Future] = {}

    def expect(app: str, validator: Any) -> str:
        correlation_id = f"{app}-{run}-{uuid.uuid4().hex[:8]}"
        expected[correlation_id] = (app, validator)
        done[correlation_id] = asyncio.get_running_loop().create_future()
        return correlation_id

    async def on_output(message: KafkaMessage) -> None:
        body = message.body
        entry = expected.get(message.correlation_id)
        future = done.get(message.correlation_id)
        if entry is None or future is None or future.done():
            return
        app, validator = entry
        try:
            future.set_result(validator(body))
        except Exception as error:  # noqa: BLE001: reported below
            future.set_exception(error)

    outputs = [
        "import-seed-out",
        "import-router-welcomed",
        "import-models-invoices",
        "import-batch-counts",
        "import-rpc-replies",
    ]
    for topic in outputs:
        broker.subscriber(
            topic, group_id=f"import-check-{run}-{topic}", auto_offset_reset="earliest"
        )(on_output)

    async with broker:
        await broker.start()
        seed = expect("seed", lambda body: body.decode("utf-8"))
        await broker.publish({"user": "John", "user_id": 1}, "import-seed-in", correlation_id=seed)
        router = expect("router", Registered.model_validate_json)
        await broker.publish({"user": "Ann", "user_id": 2}, "import-router-users", correlation_id=router)
        order = Order(
            id=uuid.uuid4(),
            created_at=datetime.now(timezone.utc),
            customer="Ada",
            items=[Item(sku="A-1", quantity=2, price=9.99)],
        )
        models = expect("models", Invoice.model_validate_json)
        await broker.publish(order, "import-models-orders", correlation_id=models)
        batch = expect("batch", TypeAdapter(int).validate_json)
        await broker.publish_batch(
            Event(name="a", value=1), Event(name="b", value=2),
            topic="import-batch-events", correlation_id=batch,
        )
        rpc = expect("rpc", TypeAdapter(int).validate_json)
        await broker.publish(
            7, "import-rpc-square", reply_to="import-rpc-replies", correlation_id=rpc
        )
        failures = 0
        for correlation_id, future in done.items():
            app = expected[correlation_id][0]
            try:
                value = await asyncio.wait_for(future, timeout=TIMEOUT)
                print(f"{app} ok: {value!r}", flush=True)
            except Exception as error:  # noqa: BLE001
                print(f"{app} FAILED: {error!r}", flush=True)
                failures += 1
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
