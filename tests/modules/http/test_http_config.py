"""The iii-http configuration end to end (spec/http.md §15, checklist 34)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyiii.config import ConfigError, HttpSettings, load_settings
from pyiii.server.app import EngineServer


def load(tmp_path: Path, config: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(
        "workers:\n  - name: iii-worker-manager\n    config: {port: 0}\n  - name: iii-http\n" + config
    )
    return load_settings(str(path), env={})


def test_defaults() -> None:
    """127.0.0.1:3111, 30000 ms, 1024 requests, 1 MiB bodies, permissive CORS, no middleware."""
    settings = HttpSettings()
    assert (settings.host, settings.port, settings.default_timeout_ms) == ("127.0.0.1", 3111, 30000)
    assert (settings.concurrency_request_limit, settings.body_limit_bytes) == (1024, 1048576)
    assert settings.cors is None and settings.middleware == ()
    assert load_settings(None, env={}).http == HttpSettings()


def test_unknown_keys_stop_startup(tmp_path: Path) -> None:
    """An unknown key (even one older documents mention) is a configuration error naming it."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "    config: {trust_proxy: true}\n")
    assert "trust_proxy" in str(info.value)


def test_limit_zero_and_middleware_order(tmp_path: Path) -> None:
    """`concurrency_request_limit: 0` is 1; global middleware is sorted by ascending priority."""
    settings = load(
        tmp_path,
        "    config:\n      port: 0\n      concurrency_request_limit: 0\n      middleware:\n"
        "        - {function_id: b, priority: 5}\n        - {function_id: a, priority: 1}\n"
        "        - {function_id: skipped, phase: onResponse}\n",
    ).http
    assert settings.concurrency_request_limit == 1
    assert [m.function_id for m in settings.middleware] == ["a", "b"]


async def test_configured_server_binds_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A config file with iii-http binds its listener and logs `API listening on address`."""
    import logging

    settings = load(tmp_path, "    config: {port: 0}\n")
    server = EngineServer(settings)
    logger = logging.getLogger("pyiii")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pyiii")
    try:
        await server.start()
        host, port = server.http.address
        assert host == "127.0.0.1" and port > 0
        assert f"API listening on address: 127.0.0.1:{port}" in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
        await server.stop()
