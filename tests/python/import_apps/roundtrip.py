"""Pydantic instances through the Rust types of the imported crates and back (used by
faststream-cli/tests/import.rs).

    roundtrip.py RUST_ROUNDTRIP_BINARY

Serializes instances of the apps' models with pydantic, has the Rust binary decode and
re-encode each (one `Model<TAB>json` line in, one json line out), then validates the Rust JSON
with `Model.model_validate_json` and compares it with the original. Prints `roundtrip ok N`,
or each mismatch and exits 1.
"""

import subprocess
import sys
from datetime import datetime, timezone
from uuid import UUID

from batch import Event
from models import Address, Invoice, Item, Order, Status
from router import Registered

INSTANCES = [
    Order(
        id=UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        created_at=datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc),
        customer="Ada",
        items=[Item(sku="A-1", quantity=2, price=9.99), Item(sku="B-2", quantity=1, price=0.5)],
        address=Address(street="1 Main St", city="Springfield", zip_code="12345"),
        status=Status.PAID,
        note="leave at the door",
        tags=["gift", "fragile"],
    ),
    # Every optional field left out: the defaults and nulls have to survive too.
    Order(
        id=UUID("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
        created_at=datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        customer="Bob",
        items=[],
    ),
    Order(
        id=UUID("00000000-0000-4000-8000-000000000001"),
        created_at=datetime(2022, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
        customer="Cy",
        items=[Item(sku="C", quantity=7, price=1e6)],
        address=Address(street="2 Side St", city="Shelbyville"),
        status=Status.SHIPPED,
    ),
    Invoice(order_id=UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427"), total=20.48, status=Status.NEW, lines=2),
    Registered(user_id=42, welcome="Welcome, John!"),
    Event(name="clicked", value=-3),
]


def main() -> int:
    lines = "".join(
        f"{type(instance).__name__}\t{instance.model_dump_json()}\n" for instance in INSTANCES
    )
    result = subprocess.run(
        [sys.argv[1]], input=lines, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        print(f"the Rust round trip failed ({result.returncode}): {result.stderr}")
        return 1
    answers = result.stdout.splitlines()
    if len(answers) != len(INSTANCES):
        print(f"expected {len(INSTANCES)} answers, got {answers}")
        return 1
    failures = 0
    for instance, answer in zip(INSTANCES, answers):
        try:
            again = type(instance).model_validate_json(answer)
        except Exception as error:  # pydantic's ValidationError, or bad JSON
            print(f"{type(instance).__name__}: {answer} is rejected: {error}")
            failures += 1
            continue
        if again != instance:
            print(f"{type(instance).__name__}: {instance!r} came back as {again!r}")
            failures += 1
    if failures:
        return 1
    print(f"roundtrip ok {len(INSTANCES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
