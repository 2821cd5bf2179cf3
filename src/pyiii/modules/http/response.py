"""Responses (spec/http.md §10.3, §11, §12, §13.3): from handler results, middleware ``respond``
results, streaming control messages and engine errors to status, headers and body bytes.

Pure code: the functions return :class:`Reply` values; the server turns them into aiohttp responses.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec

log = logging.getLogger("pyiii.http")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

JSON = "application/json"
_ENVELOPE_KEYS = ("status_code", "statusCode", "body", "headers")
#: RFC 9110 token characters (header names) and field-value characters (no CR, LF or NUL).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class Reply:
    """A complete response: status, header lines (repeats allowed) and body bytes."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


def error_id() -> str:
    """§11.3: lower-case hex of (ns since the epoch) AND 0xFFFFFFFFFFFF."""
    return format(time.time_ns() & 0xFFFFFFFFFFFF, "x")


def json_reply(status: int, value: Any) -> Reply:
    return Reply(status, [("Content-Type", JSON)], _encode(value))


NOT_FOUND_BODY = _encode({"error": {"code": "NOT_FOUND", "message": "Not Found"}})
CONDITION_BODY = _encode(
    {"error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"}, "skipped": True}
)
TIMEOUT_BODY = _encode({"error": {"code": "TIMEOUT", "message": "Request timed out"}})
MIDDLEWARE_TIMEOUT_BODY = _encode({"error": {"code": "MIDDLEWARE_TIMEOUT", "message": "Middleware timeout"}})


def not_found() -> Reply:
    return Reply(404, [("Content-Type", JSON)], NOT_FOUND_BODY)


def method_not_allowed(allowed: list[str]) -> Reply:
    return Reply(405, [("Allow", ", ".join(allowed))])


def payload_too_large(limit: int) -> Reply:
    return json_reply(
        413,
        {
            "error": {
                "code": "PAYLOAD_TOO_LARGE",
                "message": f"Request body exceeds the limit of {limit} bytes",
            }
        },
    )


def condition_not_met() -> Reply:
    return Reply(422, [("Content-Type", JSON)], CONDITION_BODY)


def timeout(middleware_pending: bool) -> Reply:
    return Reply(
        504, [("Content-Type", JSON)], MIDDLEWARE_TIMEOUT_BODY if middleware_pending else TIMEOUT_BODY
    )


def failure(code: str, message: str) -> Reply:
    """500 with the invocation error's code and message and a fresh ``error_id`` (logged)."""
    eid = error_id()
    log.error("request failed [error_id=%s]: %s: %s", eid, code, message)
    return json_reply(500, {"error": {"code": code, "message": message, "error_id": eid}})


def internal_error() -> Reply:
    eid = error_id()
    log.exception("internal error while handling an HTTP request [error_id=%s]", eid)
    return json_reply(
        500, {"error": {"code": "INTERNAL_ERROR", "message": "internal server error", "error_id": eid}}
    )


def protocol_error(status: int) -> Reply:
    """A request the HTTP parser refused (bad request line, unknown method token, headers over the
    limits): aiohttp's status with the §13.3 envelope, code and message from the status phrase,
    e.g. ``431 {"error":{"code":"REQUEST_HEADER_FIELDS_TOO_LARGE",...}}``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        status, phrase = 400, HTTPStatus.BAD_REQUEST.phrase
    code = re.sub(r"[^A-Z0-9]+", "_", phrase.upper()).strip("_")
    return json_reply(status, {"error": {"code": code, "message": phrase}})


def valid_header(name: str, value: str) -> bool:
    return _TOKEN.fullmatch(name) is not None and _VALUE.fullmatch(value) is not None


def _status(value: Any) -> int:
    """An integer in 100-999, else 200 (§10.3 rule 1, §11.2 rule 1)."""
    if type(value) is int and 100 <= value <= 999:
        return value
    return 200


def _envelope_headers(value: Any) -> Headers:
    """§11.2 rule 2: a list of ``"Name: value"`` strings or an object of strings."""
    out: Headers = []
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, str) or ":" not in entry:
                continue
            name, _, text = entry.partition(":")
            name, text = name.strip(), text.strip()
            if name:
                out.append((name, text))
    elif isinstance(value, dict):
        out = [(k, v) for k, v in value.items() if isinstance(v, str)]
    valid = [(k, v) for k, v in out if valid_header(k, v)]
    if len(valid) != len(out):
        log.warning("invalid response header entries skipped")
    return valid


def is_envelope(result: Any) -> bool:
    return type(result) is dict and any(key in result for key in _ENVELOPE_KEYS)


def from_result(result: Any) -> Reply:
    """A non-null handler result (§11.1): an envelope, or any other value as the JSON body with 200."""
    if not is_envelope(result):
        return Reply(200, [("Content-Type", JSON)], _encode(result))
    status = _status(result["status_code"] if "status_code" in result else result.get("statusCode"))
    headers = _envelope_headers(result.get("headers"))
    body = result.get("body", {}) if "body" in result else {}
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    if content_type is None:
        headers.append(("Content-Type", JSON))
        data = _encode(body)
    elif isinstance(body, str):
        data = body.encode("utf-8", "surrogatepass")
    elif body is None:
        data = b""
    else:
        data = _encode(body)
    return Reply(status, headers, data)


def from_respond(response: Any) -> Reply:
    """A middleware ``respond`` (§10.3): body always JSON; headers all-or-nothing."""
    if not isinstance(response, dict):
        response = {}
    status = _status(response.get("status_code"))
    headers: dict[str, str] = {"content-type": JSON}
    given = response.get("headers")
    if isinstance(given, dict) and all(isinstance(v, str) for v in given.values()):
        for name, value in given.items():
            if valid_header(name, value):
                # replaces a default of the same name, case-insensitively
                for existing in [k for k in headers if k.lower() == name.lower()]:
                    del headers[existing]
                headers[name] = value
    return Reply(status, list(headers.items()), _encode(response.get("body")))


@dataclass(slots=True)
class StreamHead:
    """Status and headers set by control messages before the first binary chunk (§12)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def apply(self, text: bytes) -> None:
        """Apply one text item; invalid JSON, unknown types and bad values are ignored."""
        if not text:
            return
        try:
            message = _decode(text)
        except (msgspec.DecodeError, ValueError):
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "set_status":
            code = message.get("status_code")
            if type(code) is int and 100 <= code <= 599:
                self.status = code
        elif kind == "set_headers":
            given = message.get("headers")
            if isinstance(given, dict):
                for name, value in given.items():
                    if isinstance(value, str):
                        self.headers[name] = value

    def header_lines(self) -> Headers:
        return [(k, v) for k, v in self.headers.items() if valid_header(k, v)]
