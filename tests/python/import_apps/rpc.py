"""Request/reply: the return value answers the request's reply_to."""

import os

from faststream import FastStream
from faststream.kafka import KafkaBroker

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
app = FastStream(broker)


@broker.subscriber("import-rpc-square", group_id="import-math")
async def square(n: int) -> int:
    return n * n
