"""examples/products with the official Python SDK (iii-sdk 0.25 and 0.11.6, unmodified) against pyiii."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from todo_harness import CLEAN_ENV, PRODUCTS_APP, ROOT, default_settings, wait_until

from pyiii.server.app import EngineServer

pytestmark = pytest.mark.compat

PRODUCT_ROUTES = (
    "products::create",
    "products::list",
    "products::get",
    "products::delete",
    "products::set-price",
    "transcripts::add-chunk",
    "transcripts::get",
)


class Products:
    def __init__(self, server: Any, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.url = server.http.url

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, json=body) as resp:
            return resp.status, json.loads(await resp.text())


@pytest_asyncio.fixture(params=["py-0.25", "py-0.11.6"])
async def products(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Products]:
    """An engine on the default modules with examples/products/app.py running on an official SDK."""
    python = ROOT / ".compat" / request.param / "bin" / "python"
    assert python.exists(), f"make setup installs the official SDK into .compat/{request.param}"
    server = EngineServer(default_settings(tmp_path / "data"))
    await server.start()
    worker = await asyncio.create_subprocess_exec(
        str(python),
        str(PRODUCTS_APP),
        env={**CLEAN_ENV, "III_URL": server.url},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    session = aiohttp.ClientSession()
    try:

        def registered() -> bool:
            assert worker.returncode is None, f"the products worker exited with {worker.returncode}"
            bound = {b.function_id for b in server.engine.triggers.bindings.values()}
            return all(function_id in bound for function_id in PRODUCT_ROUTES)

        await wait_until(registered, "the products worker's routes")
        yield Products(server, session)
    finally:
        await session.close()
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
        await server.stop()


async def test_products_crud(products: Products) -> None:
    """Create (201, 400), list, get (404), change the price (404 for unknown ids), delete (404 twice)."""
    status, pen = await products.call("POST", "/products", {"name": "pen", "price": 2.5})
    assert status == 201 and pen["name"] == "pen" and pen["price"] == 2.5
    status, _ = await products.call("POST", "/products", {"name": "pen"})
    assert status == 400
    status, ink = await products.call("POST", "/products", {"name": "ink", "price": 7})
    assert status == 201
    assert await products.call("GET", "/products") == (200, [pen, ink])
    assert await products.call("GET", f"/products/{pen['id']}") == (200, pen)
    status, _ = await products.call("GET", "/products/prod-missing")
    assert status == 404

    status, repriced = await products.call("PUT", f"/products/{pen['id']}/price", {"price": 3})
    assert status == 200 and repriced["price"] == 3 and "updated_at" in repriced
    assert {k: v for k, v in repriced.items() if k not in ("price", "updated_at")} == {
        k: v for k, v in pen.items() if k != "price"
    }
    status, _ = await products.call("PUT", "/products/prod-missing/price", {"price": 3})
    assert status == 404
    assert await products.call("GET", "/products/prod-missing") == (
        404,
        {"error": "product prod-missing not found"},
    )

    assert await products.call("DELETE", f"/products/{pen['id']}") == (200, repriced)
    status, _ = await products.call("DELETE", f"/products/{pen['id']}")
    assert status == 404
    assert await products.call("GET", "/products") == (200, [ink])


async def test_transcript_chunks_merge_nested_paths_atomically(products: Products) -> None:
    """50 concurrent chunks of one session all land: nested merges under chunks.<seq> and
    speakers.<name>, and a counter of exactly 50."""
    speakers = ["ann", "bob", "cy"]
    results = await asyncio.gather(
        *(
            products.call(
                "POST",
                "/transcripts/session-1/chunks",
                {"seq": seq, "speaker": speakers[seq % 3], "text": f"line {seq}"},
            )
            for seq in range(50)
        )
    )
    assert all(status == 201 for status, _ in results)
    assert sorted(body["chunk_count"] for _, body in results) == list(range(1, 51))
    status, transcript = await products.call("GET", "/transcripts/session-1")
    assert status == 200
    assert transcript["chunk_count"] == 50
    assert transcript["chunks"] == {
        str(seq): {"speaker": speakers[seq % 3], "text": f"line {seq}"} for seq in range(50)
    }
    assert set(transcript["speakers"]) == set(speakers)
    assert all(set(entry) == {"last_seq", "last_at"} for entry in transcript["speakers"].values())
    status, _ = await products.call("POST", "/transcripts/session-1/chunks", {"seq": "x"})
    assert status == 400
    status, _ = await products.call("GET", "/transcripts/unknown")
    assert status == 404
