"""Pydantic models with nested, optional and nullable fields, enums, arrays, uuid and
date-time formats."""

import os
from datetime import datetime
from enum import Enum
from typing import Optional
from uuid import UUID

from faststream import FastStream
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field

broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
app = FastStream(broker)


class Status(str, Enum):
    NEW = "new"
    PAID = "paid"
    SHIPPED = "shipped"


class Address(BaseModel):
    street: str
    city: str
    zip_code: Optional[str] = None


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1)
    price: float


class Order(BaseModel):
    id: UUID
    created_at: datetime
    customer: str
    items: list[Item]
    address: Optional[Address] = None
    status: Status = Status.NEW
    note: Optional[str] = None
    tags: list[str] = []


class Invoice(BaseModel):
    order_id: UUID
    total: float
    status: Status
    lines: int


@broker.subscriber("import-models-orders", group_id="import-billing")
@broker.publisher("import-models-invoices")
async def bill(order: Order) -> Invoice:
    total = sum(item.price * item.quantity for item in order.items)
    return Invoice(order_id=order.id, total=total, status=Status.PAID, lines=len(order.items))
