"""CORS headers (spec/http.md §14, H8, H9). Pure code: request headers in, header lines out."""

from __future__ import annotations

from pyiii.config import CorsSettings

Headers = list[tuple[str, str]]

_PERMISSIVE: Headers = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", "*")]


class Cors:
    """The policy of one configuration; ``None`` settings mean the permissive policy."""

    def __init__(self, settings: CorsSettings | None) -> None:
        self.settings = settings
        self.origins = frozenset(settings.allowed_origins) if settings else frozenset()
        self.any_origin = settings is None or settings.any_origin
        methods = settings.allowed_methods if settings else ()
        self.allow_methods = ",".join(methods) if methods else "*"

    def _origin(self, origin: str | None) -> Headers:
        if self.any_origin:
            return [("Access-Control-Allow-Origin", "*")]
        if origin is not None and origin in self.origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "origin")]
        return []

    def response_headers(self, origin: str | None) -> Headers:
        """Headers of every non-preflight response."""
        if self.settings is None:
            return _PERMISSIVE
        return self._origin(origin)

    def preflight_headers(self, origin: str | None, request_headers: str | None) -> Headers:
        """Headers of the 200 answer to a preflight (never routed)."""
        out = self._origin(origin)
        vary = "access-control-request-method, access-control-request-headers"
        if out and out[-1][0] == "Vary":
            out[-1] = ("Vary", "origin, " + vary)
        else:
            out.append(("Vary", vary))
        out.append(("Access-Control-Allow-Methods", self.allow_methods))
        out.append(("Access-Control-Allow-Headers", request_headers or "*"))
        return out
