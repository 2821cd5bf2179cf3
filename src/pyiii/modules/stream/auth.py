"""The stream listener's ``auth_function`` (spec/stream.md §3.3, S3: fail closed).

:func:`auth_input` builds the function's input from the upgrade request (pure: headers, path, query,
peer address). :class:`Authenticator` calls the function in ``default`` without metadata, waits at
most :data:`AUTH_TIMEOUT_S`, and reads the outcome:

=============================================  ==========================
outcome                                        verdict
=============================================  ==========================
``null`` / no result, ``true``                 upgrade, anonymous
object without ``"unauthorized": true``        upgrade, ``context`` = its ``context`` (``null`` when absent)
``false``, ``{"unauthorized": true}``          401
string, number, array                          401 (malformed)
invocation error, no answer within 10 s        401
=============================================  ==========================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from pyiii.engine.registry import DEFAULT_NS
from pyiii.protocol.errors import InvocationError

if TYPE_CHECKING:
    from pyiii.engine.core import Engine

log = logging.getLogger("pyiii.stream")

#: S3: no answer within this long rejects the connection.
AUTH_TIMEOUT_S: Final = 10.0

UNAUTHORIZED_BODY: Final = b'{"error":{"code":"UNAUTHORIZED","message":"Unauthorized"}}'


def _printable(value: str) -> bool:
    return all(ch == "\t" or " " <= ch <= "~" for ch in value)


def auth_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case name -> value; non-printable values are omitted; a repeated name keeps its last value."""
    out: dict[str, str] = {}
    for name, value in headers:
        if _printable(value):  # an omitted value leaves an earlier one of the same name in place
            out[name.lower()] = value
    return out


def query_params(query: str) -> dict[str, list[str]]:
    """§3.3 ``query_params``: split on ``&``, first ``=``, values not decoded, repeats appended."""
    params: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if not name:
            continue
        params.setdefault(name, []).append(value)
    return params


def format_addr(peername: Any) -> str:
    """``ip:port``, IPv6 as ``[::1]:port``; ``""`` when unknown."""
    if not isinstance(peername, tuple) or len(peername) < 2:
        return ""
    host, port = peername[0], peername[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def auth_input(raw_headers: Iterable[tuple[str, str]], raw_path: str, peername: Any) -> dict[str, Any]:
    """The auth function's input (§3.3). ``raw_path`` is the request target as received."""
    path, _, query = raw_path.partition("?")
    return {
        "headers": auth_headers(raw_headers),
        "path": path,
        "query_params": query_params(query),
        "addr": format_addr(peername),
    }


@dataclass(frozen=True, slots=True)
class Verdict:
    rejected: bool
    context: Any = None
    reason: str = ""

    def response(self) -> web.Response:
        """The 401 of a rejected upgrade (§3.3)."""
        return web.Response(status=401, body=UNAUTHORIZED_BODY, content_type="application/json")


def interpret(result: Any) -> Verdict:
    """The verdict of an auth function's result (§3.3 outcomes table)."""
    if result is None or result is True:
        return Verdict(False, None)
    if result is False:
        return Verdict(True, reason="the auth function returned false")
    if isinstance(result, dict):
        if result.get("unauthorized") is True:
            return Verdict(True, reason="the auth function returned unauthorized")
        return Verdict(False, result.get("context"))
    return Verdict(True, reason=f"malformed auth result of type {type(result).__name__}")


class Authenticator:
    """Calls the configured ``auth_function`` for each upgrade request."""

    def __init__(self, engine: Engine, function_id: str, *, timeout_s: float = AUTH_TIMEOUT_S) -> None:
        self._engine = engine
        self.function_id = function_id
        self.timeout_s = timeout_s

    async def check(self, request: web.BaseRequest) -> Verdict:
        transport = request.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        raw_headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers
        ]
        data = auth_input(raw_headers, request.raw_path, peername)
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self._engine.invoke(self.function_id, data, namespace=DEFAULT_NS)
        except TimeoutError:
            verdict = Verdict(True, reason=f"no answer within {self.timeout_s:g} s")
        except InvocationError as exc:
            verdict = Verdict(True, reason=f"{exc.code}: {exc.message}")
        else:
            verdict = interpret(result)
        if verdict.rejected:
            log.warning("stream connection from %s rejected: %s", data["addr"], verdict.reason)
        return verdict


__all__ = ["AUTH_TIMEOUT_S", "UNAUTHORIZED_BODY", "Authenticator", "Verdict", "auth_input", "interpret"]
