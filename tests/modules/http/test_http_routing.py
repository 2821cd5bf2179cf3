"""Route templates and per-method tries (spec/http.md §5-§7), without a server."""

from __future__ import annotations

import time

import pytest

from pyiii.modules.http.routing import (
    InvalidPath,
    Match,
    Route,
    RouteConflict,
    Router,
    decode_segment,
    parse_template,
)


def route(method: str, api_path: str, trigger_id: str = "t", owner: object = None) -> Route:
    return Route(
        method=method, template=parse_template(api_path), trigger_id=trigger_id, owner=owner, binding=None
    )


def matched(router: Router, method: str, path: str) -> Match:
    found = router.resolve(method, path)
    assert isinstance(found, Match), found
    return found


def test_route_keys() -> None:
    """`users/:id` and `/users/:id` share the key GET:users/:id; the root keeps its slash (§6.1)."""
    assert route("GET", "users/:id").key == route("GET", "/users/:id").key == "GET:users/:id"
    assert route("GET", "/").key == route("GET", "").key == "GET:/"
    assert route("POST", "/orders").key == "POST:orders"


@pytest.mark.parametrize(
    ("api_path", "reason"),
    [
        ("/a/:", "empty parameter name"),
        ("/a/{}", "empty parameter name"),
        ("/a/:x/:x", "duplicate parameter name 'x'"),
        ("/a/:x/{x}", "duplicate parameter name 'x'"),
        ("/a/{*rest}/b", "must be the last segment"),
    ],
)
def test_invalid_templates(api_path: str, reason: str) -> None:
    """Empty or duplicate parameter names and a non-final catch-all are rejected (§5 rule 6, H11)."""
    with pytest.raises(InvalidPath) as info:
        parse_template(api_path)
    assert str(info.value).startswith(f"invalid api_path '{api_path}': ")
    assert reason in str(info.value)


def test_literal_segments() -> None:
    """`*rest` and `a:b` are literals; only `:x`, `{x}` and `{*x}` are parameters (§5 rule 5)."""
    router = Router()
    router.add(route("GET", "/f/*rest/a:b"))
    assert isinstance(router.resolve("GET", "/f/*rest/a:b"), Match)
    assert router.resolve("GET", "/f/x/a:b") is None


def test_static_beats_parameter_and_backtracks() -> None:
    """A literal beats a parameter; a failed literal branch falls back to the parameter (§7 rule 3)."""
    router = Router()
    router.add(route("GET", "/users/new", "lit"))
    router.add(route("GET", "/users/:id", "param"))
    router.add(route("GET", "/users/new/x", "deep"))
    router.add(route("GET", "/users/:id/y", "param-y"))
    assert matched(router, "GET", "/users/new").route.trigger_id == "lit"
    assert matched(router, "GET", "/users/7").route.trigger_id == "param"
    assert matched(router, "GET", "/users/new/y").route.trigger_id == "param-y"
    assert matched(router, "GET", "/users/new/y").path_params() == {"id": "new"}


def test_trailing_slash_and_case_are_significant() -> None:
    """`/users/` is not `/users`; matching is case-sensitive; a parameter never matches empty (§5, §7)."""
    router = Router()
    router.add(route("GET", "/users"))
    router.add(route("GET", "/items/:id"))
    assert router.resolve("GET", "/users/") is None
    assert router.resolve("GET", "/Users") is None
    assert router.resolve("GET", "/items/") is None
    router.add(route("GET", "/users/"))
    assert isinstance(router.resolve("GET", "/users/"), Match)


def test_hidden_and_catch_all_parameters() -> None:
    """`{x}` matches one segment and `{*x}` the non-empty rest; neither is reported (§5 rules 3-4)."""
    router = Router()
    router.add(route("GET", "/h/{x}/end"))
    router.add(route("GET", "/files/{*path}"))
    assert matched(router, "GET", "/h/1/end").path_params() == {}
    found = matched(router, "GET", "/files/a/b/c")
    assert found.values[-1] == "a/b/c" and found.path_params() == {}
    assert router.resolve("GET", "/files/") is None


def test_path_params_are_percent_decoded() -> None:
    """`hello%20world` gives `hello world`, `a%2Fb` gives `a/b`, `+` stays, bad UTF-8 stays raw (H3)."""
    router = Router()
    router.add(route("GET", "/items/:id"))
    assert matched(router, "GET", "/items/hello%20world").path_params() == {"id": "hello world"}
    assert matched(router, "GET", "/items/a%2Fb").path_params() == {"id": "a/b"}
    assert decode_segment("a+b") == "a+b"
    assert decode_segment("%FF") == "%FF"


def test_method_not_allowed_lists_methods() -> None:
    """A path known only to other methods gives their list, with HEAD next to GET (§7 rule 4.3)."""
    router = Router()
    router.add(route("GET", "/a"))
    router.add(route("DELETE", "/a"))
    assert router.resolve("POST", "/a") == ["GET", "HEAD", "DELETE"]
    assert router.resolve("POST", "/b") is None
    assert router.resolve("BREW", "/a") == ["GET", "HEAD", "DELETE"]


def test_head_falls_back_to_get_but_explicit_head_wins() -> None:
    """HEAD is served by the GET route unless a HEAD route exists (H2)."""
    router = Router()
    router.add(route("GET", "/a", "get"))
    assert matched(router, "HEAD", "/a").route.trigger_id == "get"
    router.add(route("HEAD", "/a", "head"))
    assert matched(router, "HEAD", "/a").route.trigger_id == "head"


def test_same_key_replaces_and_conflicting_names_are_rejected() -> None:
    """Same method+path replaces; same shape with other names is a conflict naming both (§6.2-6.3)."""
    router = Router()
    first = route("GET", "/s/:listId/:userId", "1")
    router.add(first)
    with pytest.raises(RouteConflict) as info:
        router.add(route("GET", "/s/:userId/:listId", "2"))
    assert str(info.value) == (
        "Route 'GET /s/:userId/:listId' conflicts with already-registered route 'GET /s/:listId/:userId': "
        "routes with identical structure but different path-parameter names are not supported"
    )
    assert matched(router, "GET", "/s/1/2").route is first
    second = route("GET", "s/:listId/:userId", "3")
    assert router.add(second) is first
    assert matched(router, "GET", "/s/1/2").route is second


def test_methods_never_conflict() -> None:
    """`GET /a/:x` and `POST /a/:y` coexist with their own names (H5); POST /a/b uses POST's route."""
    router = Router()
    router.add(route("GET", "/a/:x"))
    router.add(route("POST", "/a/:y"))
    router.add(route("GET", "/a/b"))
    assert matched(router, "GET", "/a/1").path_params() == {"x": "1"}
    assert matched(router, "POST", "/a/b").path_params() == {"y": "b"}


def test_remove_is_by_identity() -> None:
    """Removing a replaced route is a no-op; removing the installed one prunes it (§6.4 rule 2)."""
    router = Router()
    old, new = route("GET", "/a/:x", "t"), route("GET", "/a/:x", "t")
    router.add(old)
    router.add(new)
    assert router.remove(old) is False
    assert isinstance(router.resolve("GET", "/a/1"), Match)
    assert router.remove(new) is True
    assert router.resolve("GET", "/a/1") is None
    assert router.tables["GET"].root.empty()
    assert router.remove(new) is False


def test_unsupported_method_is_stored_but_never_matches() -> None:
    """A TRACE route is kept under its key and never serves (§4 rule 2)."""
    router = Router()
    trace = route("TRACE", "/t")
    router.add(trace)
    assert router.by_key["TRACE:t"] is trace
    assert router.resolve("TRACE", "/t") is None
    assert router.remove(trace) is True


def test_matching_cost_does_not_grow_with_routes() -> None:
    """With 1,000 routes the median match time stays within 1.25x of one route (§16 item 10)."""

    def median_ns(router: Router) -> float:
        samples = []
        for _ in range(7):
            start = time.perf_counter_ns()
            for _ in range(2000):
                router.resolve("GET", "/api/users/42/orders")
            samples.append(time.perf_counter_ns() - start)
        return sorted(samples)[3]

    one = Router()
    one.add(route("GET", "/api/users/:id/orders"))
    many = Router()
    many.add(route("GET", "/api/users/:id/orders"))
    for i in range(999):
        many.add(route("GET", f"/api/r{i}/:id/x{i}"))
    assert median_ns(many) <= 1.25 * median_ns(one) + 2_000_000
