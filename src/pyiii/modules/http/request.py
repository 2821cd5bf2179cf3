"""The request object passed to handlers, conditions and middleware (spec/http.md §8, §10.2). Pure code."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import msgspec

_decode_json = msgspec.json.Decoder().decode
_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")


def query_params(query_string: str) -> dict[str, str]:
    """§8.2: form-decoded, empty pairs skipped, a bare name is ``""``, the last value wins."""
    if not query_string:
        return {}
    return dict(parse_qsl(query_string, keep_blank_values=True, errors="replace"))


def headers_of(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """§8.3: lower-case names, the last value wins, a value that is not printable ASCII or tab is ``""``."""
    out: dict[str, str] = {}
    for name, value in raw_headers:
        ok = _PRINTABLE.fullmatch(value) is not None
        out[name.decode("latin-1").lower()] = value.decode("ascii") if ok else ""
    return out


def is_json(content_type: str | None) -> bool:
    """§8.4: the exact, case-sensitive substring ``application/json``."""
    return content_type is not None and "application/json" in content_type


def parse_json_body(raw: bytes) -> Any:
    """Parsed JSON; ``None`` for an empty or invalid body (never a 400, §8.4 rule 5)."""
    if not raw:
        return None
    try:
        return _decode_json(raw)
    except (msgspec.DecodeError, ValueError):
        return None


def build_request(
    *,
    api_path: str,
    method: str,
    query: dict[str, str],
    path_params: dict[str, str],
    headers: dict[str, str],
    body: Any,
) -> dict[str, Any]:
    """The request object without its channel references (what a condition receives, §9 rule 1)."""
    return {
        "query_params": query,
        "path_params": path_params,
        "headers": headers,
        "path": api_path,
        "method": method,
        "body": body,
        "trigger": {"type": "http", "path": api_path, "method": method},
    }


def middleware_input(
    method: str, query: dict[str, str], path_params: dict[str, str], headers: dict[str, str]
) -> dict[str, Any]:
    """§10.2: no body, no path, an empty context."""
    return {
        "phase": "preHandler",
        "request": {
            "path_params": path_params,
            "query_params": query,
            "headers": headers,
            "method": method,
        },
        "context": {},
    }
