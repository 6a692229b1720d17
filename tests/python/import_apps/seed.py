"""FastStream's seed example: two plain parameters in, text out."""

import os

from faststream import FastStream
from faststream.kafka import KafkaBroker

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
app = FastStream(broker)


@broker.subscriber("import-seed-in", group_id="import-seed")
@broker.publisher("import-seed-out")
async def handle_msg(user: str, user_id: int) -> str:
    return f"User: {user_id} - {user} registered"
