"""FastStream (Python) peer for faststream-bench: the same drain and pipeline handlers.

Prints one JSON result line like the Rust cases: messages, seconds, cpu_seconds, peak_rss_kib.
The clock starts at the first handled record, as in the Rust cases. Acknowledgement is FastStream's
default (AckPolicy.ACK_FIRST: offsets auto-committed on receipt, at-most-once). That is its
fastest setting and a weaker guarantee than the Rust cases give: with AckPolicy.ACK, FastStream
commits once per message (aiokafka drained about 140 records/s here), so comparing against its
default keeps our ratios conservative.
"""

import argparse
import asyncio
import json
import resource
import threading
import time
import uuid

from pydantic import BaseModel


class Event(BaseModel):
    user: str
    user_id: int
    action: str
    ts_us: int
    seq: int


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def output_count(bootstrap: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in range(partitions))
    finally:
        consumer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["confluent", "aiokafka"], required=True)
    parser.add_argument("--case", choices=["drain", "pipeline"], required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", default="")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    # FastStream's `max_workers`: handlers running concurrently (1, its default, is sequential).
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    if args.backend == "confluent":
        from faststream.confluent import KafkaBroker
    else:
        from faststream.kafka import KafkaBroker

    broker = KafkaBroker(args.bootstrap, logger=None)
    state = {"seen": 0, "start": None}
    done = asyncio.Event()
    group = f"bench-{uuid.uuid4().hex}"

    def mark() -> None:
        if state["start"] is None:
            state["start"] = (time.perf_counter(), cpu_seconds())
        state["seen"] += 1

    concurrency = {"max_workers": args.workers} if args.workers > 1 else {}
    subscriber = broker.subscriber(args.topic, group_id=group, auto_offset_reset="earliest", **concurrency)

    if args.case == "drain":

        @subscriber
        async def drain(event: Event) -> None:
            mark()
            if state["seen"] == args.messages:
                done.set()

    else:

        @subscriber
        @broker.publisher(args.output)
        async def pipeline(event: Event) -> str:
            mark()
            return f"User: {event.user_id} - {event.user} {event.action}"

        def watch() -> None:
            while output_count(args.bootstrap, args.output, args.partitions) < args.messages:
                time.sleep(0.05)

        async def wait_output() -> None:
            await asyncio.get_running_loop().run_in_executor(None, watch)
            done.set()

    async with broker:
        await broker.start()
        if args.case == "pipeline":
            asyncio.create_task(wait_output())
        await done.wait()
        wall, cpu = time.perf_counter(), cpu_seconds()
    start_wall, start_cpu = state["start"]
    print(
        json.dumps(
            {
                "messages": args.messages,
                "seconds": wall - start_wall,
                "cpu_seconds": cpu - start_cpu,
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "latency_ms": None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
