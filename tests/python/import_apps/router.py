"""A router with a prefix: the topics are prefixed, the group is not."""

import os

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaRouter
from pydantic import BaseModel

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
router = KafkaRouter(prefix="import-router-")


class Registered(BaseModel):
    user_id: int
    welcome: str


@router.subscriber("users", group_id="import-registrations")
@router.publisher("welcomed")
async def register(user: str, user_id: int) -> Registered:
    return Registered(user_id=user_id, welcome=f"Welcome, {user}!")


broker.include_router(router)
app = FastStream(broker)
