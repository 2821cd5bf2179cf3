"""Call and registration authorization for RBAC listeners (spec/protocol.md §2.3).

An :class:`Authorizer` is attached to every connection of a listener with an ``rbac`` block. It is
built from the auth function's result (or ``{}`` when the listener has no auth function) and the
listener's ``expose_functions`` filters. Filters are duck-typed (``.match`` with ``.matches(text)``,
``.metadata``, ``.namespace``) so the engine does not depend on the config module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiii.engine.core import Engine

#: Always callable on an RBAC listener (§2.3 rule 3).
ALWAYS_ALLOWED = frozenset(
    {"engine::workers::register", "engine::channels::create"}
    | {f"engine::log::{level}" for level in ("info", "warn", "error", "debug", "trace")}
)


class AuthRefused(Exception):
    """The auth function's answer refuses the connection (sent as ``AUTH_ERROR``)."""


def glob_matches(pattern: str, text: str) -> bool:
    """``*`` matches any sequence of characters; nothing else is special."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


class Authorizer:
    def __init__(self, result: dict[str, Any], expose: Iterable[Any] = ()) -> None:
        namespaces = result.get("namespaces")
        if (isinstance(namespaces, list) and namespaces) or result.get("function_registration_prefix"):
            raise AuthRefused("namespaces and function_registration_prefix are not supported by pyiii")
        self.allowed = _strings(result.get("allowed_functions"))
        self.forbidden = _strings(result.get("forbidden_functions"))
        self.allow_function_registration = result.get("allow_function_registration", True) is not False
        self.allow_trigger_type_registration = result.get("allow_trigger_type_registration", False) is True
        types = result.get("allowed_trigger_types")
        self.allowed_trigger_types: frozenset[str] | None = (
            frozenset(_strings(types)) if isinstance(types, list) else None
        )
        context = result.get("context")
        self.context: dict[str, Any] = context if isinstance(context, dict) else {}
        self.expose = tuple(expose)

    def allows_call(self, engine: Engine, function_id: str, namespace: str = "default") -> bool:
        """§2.3 call authorization, rules 1–5 in order, for a call resolved in ``namespace``."""
        if any(glob_matches(p, function_id) for p in self.forbidden):
            return False
        if any(glob_matches(p, function_id) for p in self.allowed):
            return True
        if function_id in ALWAYS_ALLOWED:
            return True
        return any(self._exposed(engine, f, function_id, namespace) for f in self.expose)

    def _exposed(self, engine: Engine, flt: Any, function_id: str, namespace: str) -> bool:
        if (getattr(flt, "namespace", None) or "default") != namespace:
            return False
        match = getattr(flt, "match", None)
        if match is not None:
            return bool(match.matches(function_id))
        entry = engine.functions.resolve(namespace, function_id)
        wanted = getattr(flt, "metadata", None)
        if not wanted or entry is None or not isinstance(entry.metadata, dict):
            return False
        for key, expected in wanted.items():
            actual = entry.metadata.get(key)
            if hasattr(expected, "matches"):
                if not (isinstance(actual, str) and expected.matches(actual)):
                    return False
            elif actual != expected:
                return False
        return True

    def allows_trigger_type(self, trigger_type: str) -> bool:
        return self.allowed_trigger_types is None or trigger_type in self.allowed_trigger_types
