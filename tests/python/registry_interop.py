"""Python's official schema registry serializers (confluent-kafka from PyPI), for
tests/tests/registry.rs: writes records a faststream-rs handler decodes, and reads what a
faststream-rs app wrote, through one registry.

    registry_interop.py produce BOOTSTRAP REGISTRY TOPIC avro|json   (writes ORDERS, prints "done")
    registry_interop.py consume BOOTSTRAP REGISTRY TOPIC avro|json N (prints N records as JSON lines)
"""

import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

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


def main() -> None:
    command, bootstrap, url, topic, form = sys.argv[1:6]
    registry = SchemaRegistryClient({"url": url})
    if command == "produce":
        if form == "avro":
            serialize = AvroSerializer(registry, AVRO)
        else:
            serialize = JSONSerializer(JSON, registry)
        producer = Producer({"bootstrap.servers": bootstrap})
        for order in ORDERS:
            value = serialize(order, SerializationContext(topic, MessageField.VALUE))
            producer.produce(topic, value=value)
        producer.flush(30)
        print("done", flush=True)
    elif command == "consume":
        count = int(sys.argv[6])
        if form == "avro":
            deserialize = AvroDeserializer(registry)
        else:
            deserialize = JSONDeserializer(None, schema_registry_client=registry)
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
            print(json.dumps(value, sort_keys=True), flush=True)
            seen += 1
        consumer.close()
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
