"""Products CRUD and transcript chunks on state, written with the OFFICIAL Python SDK (`iii-sdk`).

Nothing here is pyiii-specific: it runs unmodified against pyiii with iii-sdk 0.25.0 and 0.11.6
(tests/examples/test_products_example.py runs both).

    pip install iii-sdk==0.25.0          # or use .compat/py-0.25 (make setup)
    pyiii                                # an engine with the default module set, in another terminal
    III_URL=ws://127.0.0.1:49134 python examples/products/app.py

    POST   /products {name, price}             201 with the product (400 without a name or a numeric price)
    GET    /products                           every product
    GET    /products/:id                       the product, 404 when unknown
    DELETE /products/:id                       the removed product, 404 when unknown
    PUT    /products/:id/price {price}         `state::update` set ops, 404 when unknown
    POST   /transcripts/:sessionId/chunks {seq, speaker, text}
                                               one atomic `state::update` with nested `merge` paths:
                                               chunks.<seq> and speakers.<speaker>, plus a counter
    GET    /transcripts/:sessionId             the transcript, 404 when unknown
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from iii import InitOptions, register_worker

iii = register_worker(
    address=os.environ.get("III_URL", "ws://127.0.0.1:49134"),
    options=InitOptions(worker_name="products-app"),
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def state(op: str, **payload: Any) -> Any:
    return await iii.trigger_async({"function_id": f"state::{op}", "payload": payload})


def reply(status: int, body: Any) -> dict[str, Any]:
    return {"status_code": status, "body": body}


def is_price(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


# ---------------------------------------------------------------------------------------------------
# Products


async def create_product(req: dict[str, Any]) -> dict[str, Any]:
    body = req.get("body") or {}
    name, price = body.get("name"), body.get("price")
    if not isinstance(name, str) or not name.strip() or not is_price(price):
        return reply(400, {"error": "name (string) and price (number >= 0) are required"})
    product_id = f"prod-{uuid.uuid4().hex[:12]}"
    product = {"id": product_id, "name": name.strip(), "price": price, "created_at": now()}
    await state("set", scope="products", key=product["id"], value=product)
    return reply(201, product)


async def list_products(req: dict[str, Any]) -> Any:
    return await state("list", scope="products")


async def get_product(req: dict[str, Any]) -> dict[str, Any]:
    product_id = req["path_params"]["id"]
    product = await state("get", scope="products", key=product_id)
    if product is None:
        return reply(404, {"error": f"product {product_id} not found"})
    return reply(200, product)


async def delete_product(req: dict[str, Any]) -> dict[str, Any]:
    product_id = req["path_params"]["id"]
    removed = await state("delete", scope="products", key=product_id)  # the removed value, or None
    if removed is None:
        return reply(404, {"error": f"product {product_id} not found"})
    return reply(200, removed)


async def set_price(req: dict[str, Any]) -> dict[str, Any]:
    product_id = req["path_params"]["id"]
    price = (req.get("body") or {}).get("price")
    if not is_price(price):
        return reply(400, {"error": "price (number >= 0) is required"})
    if await state("get", scope="products", key=product_id) is None:
        return reply(404, {"error": f"product {product_id} not found"})
    result = await state(
        "update",
        scope="products",
        key=product_id,
        ops=[
            {"type": "set", "path": "price", "value": price},
            {"type": "set", "path": "updated_at", "value": now()},
        ],
    )
    return reply(200, result["new_value"])


# ---------------------------------------------------------------------------------------------------
# Transcripts: nested merge paths build {chunks: {<seq>: {...}}, speakers: {<name>: {...}}} in one
# atomic update, so concurrent chunks of one session never overwrite each other.


async def add_chunk(req: dict[str, Any]) -> dict[str, Any]:
    session_id = req["path_params"]["sessionId"]
    body = req.get("body") or {}
    seq, speaker, text = body.get("seq"), body.get("speaker"), body.get("text")
    if not isinstance(seq, int) or not isinstance(speaker, str) or not speaker or not isinstance(text, str):
        return reply(400, {"error": "seq (integer), speaker and text (strings) are required"})
    at = now()
    result = await state(
        "update",
        scope="transcripts",
        key=session_id,
        ops=[
            {"type": "merge", "path": ["chunks", str(seq)], "value": {"speaker": speaker, "text": text}},
            {"type": "merge", "path": ["speakers", speaker], "value": {"last_seq": seq, "last_at": at}},
            {"type": "increment", "path": "chunk_count", "by": 1},
        ],
    )
    if result.get("errors"):
        return reply(400, {"error": "update failed", "details": result["errors"]})
    return reply(201, {"session_id": session_id, "chunk_count": result["new_value"]["chunk_count"]})


async def get_transcript(req: dict[str, Any]) -> dict[str, Any]:
    session_id = req["path_params"]["sessionId"]
    transcript = await state("get", scope="transcripts", key=session_id)
    if transcript is None:
        return reply(404, {"error": f"transcript {session_id} not found"})
    return reply(200, transcript)


for function_id, handler, method, path in [
    ("products::create", create_product, "POST", "/products"),
    ("products::list", list_products, "GET", "/products"),
    ("products::get", get_product, "GET", "/products/:id"),
    ("products::delete", delete_product, "DELETE", "/products/:id"),
    ("products::set-price", set_price, "PUT", "/products/:id/price"),
    ("transcripts::add-chunk", add_chunk, "POST", "/transcripts/:sessionId/chunks"),
    ("transcripts::get", get_transcript, "GET", "/transcripts/:sessionId"),
]:
    iii.register_function(function_id, handler)
    iii.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method}}
    )


async def main() -> None:
    await asyncio.Event().wait()  # keep the process alive; the SDK serves calls in its own thread


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        iii.shutdown()
