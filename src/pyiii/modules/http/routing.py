"""HTTP route tables (spec/http.md §5-§7): path templates, one segment trie per method. Pure code.

A template is parsed once at registration into segments; requests are matched by walking the trie of
their method segment by segment (literal, then parameter, then catch-all, with backtracking), so the
cost of a match depends on the request's segments, never on the number of routes (H5).

Updates are synchronous and made on the event loop, so a request sees the table before or after an
update, never a partial one (§6.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

LITERAL = 0
PARAM = 1  # `:name`, reported in path_params
HIDDEN = 2  # `{name}`, matched like a parameter, not reported (§5 rule 3)
CATCH_ALL = 3  # `{*name}`, the rest of the path, not reported


class InvalidPath(ValueError):
    """A template rejected at registration (§5 rule 6, H11)."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed ``api_path``. ``shape`` identifies routes that the trie cannot tell apart (§6.3)."""

    api_path: str  # exactly as registered (the request object's `path`, §8.1)
    segments: tuple[tuple[int, str], ...]  # (kind, literal text or parameter name)
    key_path: str  # the path part of the route key (§6.1)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name for kind, name in self.segments if kind == PARAM)

    #: ``(segment index, name)`` of each parameter (computed once: every request reads it).
    param_positions: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positions = tuple((i, name) for i, (kind, name) in enumerate(self.segments) if kind == PARAM)
        object.__setattr__(self, "param_positions", positions)


def split_path(path: str) -> list[str]:
    """Segments of a template or raw request path: one leading ``/`` dropped, then split on ``/``."""
    if path.startswith("/"):
        path = path[1:]
    return path.split("/")


def parse_template(api_path: str) -> Template:
    """Parse ``api_path`` (§5). Raises :class:`InvalidPath` with the spec's message."""
    segments: list[tuple[int, str]] = []
    seen: set[str] = set()
    raw = split_path(api_path)
    for i, seg in enumerate(raw):
        if seg.startswith(":"):
            kind, name = PARAM, seg[1:]
        elif seg.startswith("{*") and seg.endswith("}"):
            kind, name = CATCH_ALL, seg[2:-1]
        elif seg.startswith("{") and seg.endswith("}") and len(seg) >= 2:
            kind, name = HIDDEN, seg[1:-1]
        else:
            segments.append((LITERAL, seg))
            continue
        if not name:
            raise InvalidPath(f"invalid api_path '{api_path}': empty parameter name in segment '{seg}'")
        if name in seen:
            raise InvalidPath(f"invalid api_path '{api_path}': duplicate parameter name '{name}'")
        if kind == CATCH_ALL and i != len(raw) - 1:
            raise InvalidPath(f"invalid api_path '{api_path}': catch-all '{seg}' must be the last segment")
        seen.add(name)
        segments.append((kind, name))
    stripped = api_path[1:] if api_path.startswith("/") else api_path
    return Template(api_path, tuple(segments), stripped or "/")


@dataclass(eq=False, slots=True)
class Route:
    """One installed route: what a request needs to run it, and who owns it (§6.4)."""

    method: str
    template: Template
    trigger_id: str
    owner: Any  # the registering peer (worker_id identity)
    binding: Any  # the engine's Binding (function id, namespace, metadata, config)
    condition_function_id: str | None = None
    middleware_function_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method}:{self.template.key_path}"

    @property
    def display(self) -> str:
        path = self.template.api_path
        return f"{self.method} {path if path.startswith('/') else '/' + path}"


@dataclass(eq=False, slots=True)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    catch_all: Route | None = None
    route: Route | None = None

    def empty(self) -> bool:
        return not self.literals and self.param is None and self.catch_all is None and self.route is None


class RouteConflict(ValueError):
    """Same method and shape, different parameter names (§6.3)."""


@dataclass(slots=True)
class Match:
    route: Route
    values: list[str]  # raw request segments at the template's positions (catch-all: joined rest)

    def path_params(self) -> dict[str, str]:
        """``:name`` values, percent-decoded as UTF-8; the raw segment when that fails (§8.2, H3)."""
        out: dict[str, str] = {}
        for i, name in self.route.template.param_positions:
            out[name] = decode_segment(self.values[i])
        return out


def decode_segment(raw: str) -> str:
    if "%" not in raw:
        return raw
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return raw


class MethodTable:
    """The trie of one method."""

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root = _Node()

    def _slot(self, template: Template, create: bool) -> tuple[_Node, bool] | None:
        """The node holding a template's route and whether it is the catch-all slot."""
        node = self.root
        for kind, text in template.segments:
            if kind == CATCH_ALL:
                return node, True
            if kind == LITERAL:
                nxt = node.literals.get(text)
                if nxt is None:
                    if not create:
                        return None
                    nxt = node.literals[text] = _Node()
            else:
                nxt = node.param
                if nxt is None:
                    if not create:
                        return None
                    nxt = node.param = _Node()
            node = nxt
        return node, False

    def get(self, template: Template) -> Route | None:
        slot = self._slot(template, create=False)
        if slot is None:
            return None
        node, catch_all = slot
        return node.catch_all if catch_all else node.route

    def put(self, route: Route) -> Route | None:
        """Install ``route``; returns the route it replaced (same key). Raises :class:`RouteConflict`."""
        slot = self._slot(route.template, create=False)
        if slot is not None:
            node, catch_all = slot
            old = node.catch_all if catch_all else node.route
            if old is not None and old.key != route.key:
                raise RouteConflict(
                    f"Route '{route.display}' conflicts with already-registered route '{old.display}': "
                    "routes with identical structure but different path-parameter names are not supported"
                )
        node, catch_all = self._slot(route.template, create=True)  # type: ignore[misc]
        if catch_all:
            old, node.catch_all = node.catch_all, route
        else:
            old, node.route = node.route, route
        return old

    def remove(self, route: Route) -> bool:
        """Remove exactly ``route`` (identity); prunes empty nodes. False when it is not installed."""
        path: list[tuple[_Node, int, str]] = []
        node = self.root
        for kind, text in route.template.segments:
            if kind == CATCH_ALL:
                if node.catch_all is not route:
                    return False
                node.catch_all = None
                break
            nxt = node.literals.get(text) if kind == LITERAL else node.param
            if nxt is None:
                return False
            path.append((node, kind, text))
            node = nxt
        else:
            if node.route is not route:
                return False
            node.route = None
        # prune
        for parent, kind, text in reversed(path):
            child = parent.literals[text] if kind == LITERAL else parent.param
            if child is None or not child.empty():
                break
            if kind == LITERAL:
                del parent.literals[text]
            else:
                parent.param = None
        return True

    def match(self, segments: list[str]) -> Match | None:
        values: list[str] = []
        route = _walk(self.root, segments, 0, values)
        return None if route is None else Match(route, values)


def _walk(node: _Node, segs: list[str], i: int, values: list[str]) -> Route | None:
    if i == len(segs):
        return node.route
    seg = segs[i]
    nxt = node.literals.get(seg)
    if nxt is not None:
        values.append(seg)
        found = _walk(nxt, segs, i + 1, values)
        if found is not None:
            return found
        values.pop()
    if node.param is not None and seg:
        values.append(seg)
        found = _walk(node.param, segs, i + 1, values)
        if found is not None:
            return found
        values.pop()
    if node.catch_all is not None:
        rest = "/".join(segs[i:])
        if rest:
            values.append(rest)
            return node.catch_all
    return None


class Router:
    """Per-method tables and the route keys (§6). ``resolve`` answers none / wrong method / match."""

    def __init__(self) -> None:
        self.tables: dict[str, MethodTable] = {}
        self.by_key: dict[str, Route] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def add(self, route: Route) -> Route | None:
        """Install (replacing the same key, whoever owns it, §6.2); raises :class:`RouteConflict`.

        A route of an unsupported method is stored but never matches (§4 rule 2).
        """
        if route.method not in SUPPORTED_METHODS:
            old = self.by_key.get(route.key)
            self.by_key[route.key] = route
            return old
        table = self.tables.get(route.method)
        if table is None:
            table = self.tables[route.method] = MethodTable()
        old = table.put(route)
        self.by_key[route.key] = route
        return old

    def remove(self, route: Route) -> bool:
        """Remove ``route`` if it is still the installed one for its key (§6.4 rule 2)."""
        if self.by_key.get(route.key) is not route:
            return False
        del self.by_key[route.key]
        table = self.tables.get(route.method)
        if table is not None:
            table.remove(route)
        return True

    def resolve(self, method: str, raw_path: str) -> Match | list[str] | None:
        """§7 rule 4: a :class:`Match`; else the allowed methods (405); else None (404)."""
        segments = split_path(raw_path)
        table = self.tables.get(method)
        if table is not None:
            found = table.match(segments)
            if found is not None:
                return found
        if method == "HEAD":
            get = self.tables.get("GET")
            if get is not None:
                found = get.match(segments)
                if found is not None:
                    return found
        allowed: list[str] = []
        for name in SUPPORTED_METHODS:
            other = self.tables.get(name)
            if name != method and other is not None and other.match(segments) is not None:
                allowed.append(name)
        if "GET" in allowed and "HEAD" not in allowed and method != "HEAD":
            allowed.insert(allowed.index("GET") + 1, "HEAD")
        return allowed or None
