"""Python FastStream on the other end of faststream-rs request/reply (used by
tests/tests/python_interop.rs).

    interop.py respond BOOTSTRAP TOPIC GROUP
        A FastStream subscriber on TOPIC answering each integer n with n + 1000 through the
        request's reply_to; prints "ready" once consuming, runs until killed.

    interop.py request BOOTSTRAP TOPIC REPLY_TOPIC VALUE
        Publishes VALUE to TOPIC with reply_to=REPLY_TOPIC and a fresh correlation id, waits
        for the record on REPLY_TOPIC with that correlation id, prints its payload and exits.

    interop.py traced BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP
        A FastStream subscriber on IN_TOPIC, traced by FastStream's KafkaTelemetryMiddleware,
        publishing "py:{body}" to OUT_TOPIC; prints "ready" once consuming and, as each span
        ends, "span NAME|TRACE_ID|SPAN_ID|PARENT_SPAN_ID" (hex, "-" for no parent).

    interop.py isolation BOOTSTRAP TOPIC LAST
        Two FastStream subscribers reading TOPIC from its start, one with aiokafka's
        isolation_level="read_committed" and one with "read_uncommitted", printing
        "read_committed BODY" and "read_uncommitted BODY" for each record; exits once both
        have read the body LAST.
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


async def traced(bootstrap: str, in_topic: str, out_topic: str, group: str) -> None:
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class PrintSpans(SpanExporter):
        def export(self, spans):
            for span in spans:
                parent = f"{span.parent.span_id:016x}" if span.parent else "-"
                context = span.context
                print(
                    f"span {span.name}|{context.trace_id:032x}|{context.span_id:016x}|{parent}",
                    flush=True,
                )
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "python-interop"}))
    provider.add_span_processor(SimpleSpanProcessor(PrintSpans()))
    broker = KafkaBroker(
        bootstrap, middlewares=(KafkaTelemetryMiddleware(tracer_provider=provider),)
    )

    @broker.subscriber(in_topic, group_id=group, auto_offset_reset="earliest")
    @broker.publisher(out_topic)
    async def relay(body: str) -> str:
        return f"py:{body}"

    async with broker:
        await broker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()


async def isolation(bootstrap: str, topic: str, last: str) -> None:
    broker = KafkaBroker(bootstrap)
    done = {level: asyncio.Event() for level in ("read_committed", "read_uncommitted")}

    def seen(level: str, body: Any) -> None:
        print(f"{level} {body}", flush=True)
        if str(body) == last:
            done[level].set()

    @broker.subscriber(
        topic,
        group_id=f"interop-committed-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    async def read_committed(body: Any) -> None:
        seen("read_committed", body)

    @broker.subscriber(
        topic,
        group_id=f"interop-uncommitted-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
    )
    async def read_uncommitted(body: Any) -> None:
        seen("read_uncommitted", body)

    async with broker:
        await broker.start()
        await asyncio.wait_for(
            asyncio.gather(*(event.wait() for event in done.values())), timeout=60
        )


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "respond":
        asyncio.run(respond(*args))
    elif command == "request":
        asyncio.run(request(*args))
    elif command == "traced":
        asyncio.run(traced(*args))
    elif command == "isolation":
        asyncio.run(isolation(*args))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
