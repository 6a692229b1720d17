"""Python's official schema registry serializers (confluent-kafka from PyPI), for
tests/tests/registry.rs: writes records a faststream-rs handler decodes, and reads what a
faststream-rs app wrote, through one registry.

    registry_interop.py produce BOOTSTRAP REGISTRY TOPIC avro|json|protobuf
        writes ORDERS (PINGS for protobuf), prints "done"
    registry_interop.py consume BOOTSTRAP REGISTRY TOPIC avro|json|protobuf N
        prints N records as JSON lines

Protobuf's message class is built from a descriptor here (shop.Ping: uint64 seq = 1,
string from = 2), so no protoc is needed.
"""

import functools
import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
    }
)
JSON = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
        "required": ["id", "item"],
    }
)
ORDERS = [{"id": 1, "item": "tea"}, {"id": 2, "item": "cake"}, {"id": 3, "item": "jam"}]
PINGS = [{"seq": 1, "from": "py"}, {"seq": 2, "from": "py"}, {"seq": 3, "from": "py"}]
PROTOBUF = {"use.deprecated.format": False}


@functools.cache
def ping_class():
    """shop.Ping as a message class, from its descriptor (one class: the serializer checks it)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="ping.proto", package="shop", syntax="proto3")
    message = file.message_type.add(name="Ping")
    message.field.add(name="seq", number=1, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL)
    message.field.add(name="from", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Ping"))


def ping(values):
    message = ping_class()(seq=values["seq"])
    setattr(message, "from", values["from"])  # `from` is a Python keyword
    return message


def main() -> None:
    command, bootstrap, url, topic, form = sys.argv[1:6]
    # A request whose answer never comes is given up after 20 s and retried (the client's
    # default waits forever: once a registration hung a test run for over ten minutes).
    registry = SchemaRegistryClient({"url": url, "timeout": 20})
    if command == "produce":
        records = ORDERS
        if form == "avro":
            serialize = AvroSerializer(registry, AVRO)
        elif form == "json":
            serialize = JSONSerializer(JSON, registry)
        else:
            serialize = ProtobufSerializer(ping_class(), registry, PROTOBUF)
            records = [ping(values) for values in PINGS]
        producer = Producer({"bootstrap.servers": bootstrap})
        for record in records:
            value = serialize(record, SerializationContext(topic, MessageField.VALUE))
            producer.produce(topic, value=value)
        producer.flush(30)
        print("done", flush=True)
    elif command == "consume":
        count = int(sys.argv[6])
        if form == "avro":
            deserialize = AvroDeserializer(registry)
        elif form == "json":
            deserialize = JSONDeserializer(None, schema_registry_client=registry)
        else:
            deserialize = ProtobufDeserializer(ping_class(), PROTOBUF)
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"py-{topic}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        seen = 0
        while seen < count:
            message = consumer.poll(30)
            if message is None:
                sys.exit(f"timed out after {seen} of {count} records")
            if message.error():
                continue
            value = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
            if form == "protobuf":
                value = {"seq": value.seq, "from": getattr(value, "from")}
            print(json.dumps(value, sort_keys=True), flush=True)
            seen += 1
        consumer.close()
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
