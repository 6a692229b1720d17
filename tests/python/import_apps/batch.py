"""A batch subscriber: a list of events per call."""

import os

from faststream import FastStream
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
app = FastStream(broker)


class Event(BaseModel):
    name: str
    value: int


@broker.subscriber("import-batch-events", group_id="import-audit", batch=True, max_records=100)
@broker.publisher("import-batch-counts")
async def count_events(events: list[Event]) -> int:
    return len(events)
