"""Two subscribers and a publisher, imported without `--app`: the document does not say
whose publisher it is, so it becomes a publisher object of the Rust app."""

import os

from faststream import FastStream
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
app = FastStream(broker)


class Shipment(BaseModel):
    order_id: int
    carrier: str


@broker.subscriber("import-multi-shipments", group_id="import-shipping")
@broker.publisher("import-multi-notices")
async def on_shipment(shipment: Shipment) -> str:
    return f"order {shipment.order_id} left with {shipment.carrier}"


@broker.subscriber("import-multi-cancellations", group_id="import-shipping")
async def on_cancellation(order_id: int, reason: str) -> None:
    print(order_id, reason)
