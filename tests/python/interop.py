"""Python FastStream on the other end of faststream-rs request/reply (used by
tests/tests/python_interop.rs).

    interop.py respond BOOTSTRAP TOPIC GROUP
        A FastStream subscriber on TOPIC answering each integer n with n + 1000 through the
        request's reply_to; prints "ready" once consuming, runs until killed.

    interop.py request BOOTSTRAP TOPIC REPLY_TOPIC VALUE
        Publishes VALUE to TOPIC with reply_to=REPLY_TOPIC and a fresh correlation id, waits
        for the record on REPLY_TOPIC with that correlation id, prints its payload and exits.
"""

import asyncio
import sys
import uuid
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage


async def respond(bootstrap: str, topic: str, group: str) -> None:
    broker = KafkaBroker(bootstrap)

    @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest")
    async def plus_thousand(n: int) -> int:
        return n + 1000

    async with broker:
        await broker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()


async def request(bootstrap: str, topic: str, reply_topic: str, value: str) -> None:
    broker = KafkaBroker(bootstrap)
    correlation_id = str(uuid.uuid4())
    answered: asyncio.Future = asyncio.get_running_loop().create_future()

    @broker.subscriber(
        reply_topic, group_id=f"interop-{correlation_id}", auto_offset_reset="earliest"
    )
    async def on_reply(body: Any, message: KafkaMessage) -> None:
        if message.correlation_id == correlation_id and not answered.done():
            answered.set_result(body)

    async with broker:
        await broker.start()
        await broker.publish(
            int(value), topic=topic, reply_to=reply_topic, correlation_id=correlation_id
        )
        body = await asyncio.wait_for(answered, timeout=60)
        print(body, flush=True)


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "respond":
        asyncio.run(respond(*args))
    elif command == "request":
        asyncio.run(request(*args))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
