"""The update-op interpreter of ``state::update`` and ``stream::update`` (spec/state.md §6).

Two layers, mirroring the spec's split between call errors and per-op errors:

* :func:`decode_ops` turns the wire ``ops`` array into :class:`Op` values. Anything that does not
  decode is a **request-level** error (§3.2): it raises :class:`OpsDecodeError`, whose ``detail`` is
  the serde-style text that follows ``Failed to deserialize input for <function id>: `` in a
  ``deserialization_error``. One bad op rejects the whole request.
* :func:`apply_ops` runs decoded ops on a value (§6.4-§6.6). It never raises for a decoded op: each
  op either succeeds or adds one **per-op error** (``{"op_index", "code", "message", "doc_url"}``)
  to the result, and later ops still run.

The interpreter is pure (no I/O, deterministic), so an adapter may re-run it after an optimistic
concurrency conflict (§6.1, §8.4). It never mutates its input: containers are copied on write, and
only those on a path an op writes to, so one ``increment`` on a large object copies the top-level
dict and nothing else. The result therefore **shares** unchanged subtrees with the input value and
with the ops' values: callers must treat ``value``, the ops and ``new_value`` as immutable.

Exceptions::

    ValueError
     └── OpsDecodeError      (code "deserialization_error", field ``detail``)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_LIMITS",
    "DOC_URL",
    "MISSING",
    "OP_TYPES",
    "PROTO_NAMES",
    "Op",
    "OpLimits",
    "OpResult",
    "OpsDecodeError",
    "apply_ops",
    "decode_op",
    "decode_ops",
    "invalid_type",
    "json_depth",
    "json_type",
    "serde_unexpected",
]


class _Missing:
    """Type of :data:`MISSING`: the state of a key that is absent (§4), distinct from JSON ``null``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: The "key is absent" state (§4). Pass it as ``value`` to :func:`apply_ops` for a missing key.
MISSING: Final = _Missing()

#: ``doc_url`` of every per-op error (§6.4 rule 4).
DOC_URL: Final = "https://iii.dev/docs/workers/iii-state#error-codes"

#: Op types in the order serde lists them in ``unknown variant`` messages (§3.2, §6.2).
OP_TYPES: Final = ("set", "merge", "increment", "decrement", "append", "remove")

#: Path segments and merge-value top-level keys rejected as prototype-pollution sinks (§6.5, §6.6.2).
PROTO_NAMES: Final = frozenset({"__proto__", "constructor", "prototype"})
# §6.6.2: top-level keys are checked in sorted order and the first offender is reported.
_PROTO_SORTED: Final = tuple(sorted(PROTO_NAMES))

I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
U64_MAX: Final = 2**64 - 1

_EXPECTED_VARIANTS: Final = ", ".join(f"`{t}`" for t in OP_TYPES)


@dataclass(frozen=True, slots=True)
class OpLimits:
    """Limits of path validation (§6.5) and merge-value validation (§6.6.2). Each bound is inclusive."""

    max_path_depth: int = 32
    max_segment_bytes: int = 256
    max_merge_keys: int = 1024
    max_merge_depth: int = 16


DEFAULT_LIMITS: Final = OpLimits()


@dataclass(frozen=True, slots=True)
class Op:
    """One decoded op (§6.2).

    ``path`` is normalised to a tuple of literal keys (§6.3): ``()`` is the root. Field-path ops
    (``set``, ``increment``, ``decrement``, ``remove``) have at most one segment. ``value`` is
    ``None`` for ``set`` without a value and unused by ``increment``, ``decrement`` and ``remove``;
    ``by`` (an i64) is used only by ``increment`` and ``decrement``.
    """

    type: str
    path: tuple[str, ...] = ()
    value: Any = None
    by: int = 0


@dataclass(slots=True)
class OpResult:
    """Outcome of :func:`apply_ops` (§6.4 rule 5).

    ``new_value``: the value to store (always stored, §5.4 rule 3; ``{}`` for a missing key when
    no op succeeded). ``errors``: one wire-shaped dict per failed op, in op order. ``changed``:
    ``False`` guarantees that no op wrote, so ``new_value`` is the input value itself (or the fresh
    ``{}`` of a missing key); ``True`` means some op wrote, which may still leave an equal value
    (``set "a" 1`` over ``{"a": 1}``).
    """

    new_value: Any
    errors: list[dict[str, Any]]
    changed: bool

    def response(self, old_value: Any) -> dict[str, Any]:
        """The update result ``{"old_value", "new_value", "errors"?}`` (§3.3 rules 3-4, §5.4).

        ``old_value`` is the value before the update, or :data:`MISSING` (sent as ``null``).
        ``errors`` is present only when at least one op failed.
        """
        out: dict[str, Any] = {
            "old_value": None if old_value is MISSING else old_value,
            "new_value": self.new_value,
        }
        if self.errors:
            out["errors"] = self.errors
        return out


class OpsDecodeError(ValueError):
    """The ``ops`` array does not decode (§3.2): the whole request fails with ``deserialization_error``.

    ``detail`` is the serde-style text after the ``Failed to deserialize input for <function id>: ``
    prefix, starting with the location of the offending element (``ops[0].by: ...``).
    """

    code: Final = "deserialization_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def message(self, function_id: str) -> str:
        """The full error message for ``function_id`` (§3.2 rule 1)."""
        return f"Failed to deserialize input for {function_id}: {self.detail}"


# --------------------------------------------------------------------------------------------------
# JSON helpers (§3.2, §3.4)


def json_type(value: Any) -> str:
    """The JSON type name used in error messages (§3.4 rule 4)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _format_float(value: float) -> str:
    # Close to Rust's ryu output (`1.5`, `1.0`, `1e100`); §3.4 rule 2 allows other formatting.
    return repr(value).replace("e+", "e")


def serde_unexpected(value: Any) -> str:
    """How serde_json names a decoded JSON value in ``invalid type`` messages (§3.2).

    ``null``, ``boolean `true```, ``integer `1```, ``floating point `1.5```, ``string "x"``,
    ``sequence``, ``map``. An integer outside [-2^63, 2^64-1] is a double once decoded (§3.4 rule 2),
    so it is named as a floating point number.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        if I64_MIN <= value <= U64_MAX:
            return f"integer `{value}`"
        try:
            return f"floating point `{_format_float(float(value))}`"
        except OverflowError:
            return f"floating point `{'-' if value < 0 else ''}inf`"
    if isinstance(value, float):
        return f"floating point `{_format_float(value)}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list | tuple):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def invalid_type(value: Any, expected: str) -> str:
    """serde's ``invalid type: <unexpected>, expected <expected>`` detail (§3.2 table)."""
    return f"invalid type: {serde_unexpected(value)}, expected {expected}"


def json_depth(value: Any) -> int:
    """Nesting depth (§6.6.2): a scalar is 0; an object or array is 1 + the depth of its deepest child.

    Iterative, so hostile depths cannot exhaust the Python stack.
    """
    if not isinstance(value, dict | list):
        return 0
    best = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best:
            best = depth
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return best


# --------------------------------------------------------------------------------------------------
# Decoding: request-level validation (§3.2, §6.2)

# Per op type: (known fields, required fields in declaration order). Unknown fields are ignored
# (§3.1 rule 2). `merge` and `append` take a segment path; the others a field path (§6.2, §6.3).
_FIELDS: Final[dict[str, tuple[frozenset[str], tuple[str, ...]]]] = {
    "set": (frozenset({"path", "value"}), ("path",)),
    "merge": (frozenset({"path", "value"}), ("value",)),
    "increment": (frozenset({"path", "by"}), ("path", "by")),
    "decrement": (frozenset({"path", "by"}), ("path", "by")),
    "append": (frozenset({"path", "value"}), ("value",)),
    "remove": (frozenset({"path"}), ("path",)),
}
_SEGMENT_PATH_OPS: Final = frozenset({"merge", "append"})


def decode_ops(raw: Any, *, field: str = "ops") -> tuple[Op, ...]:
    """Decode the wire ``ops`` array (§6.2). Raises :class:`OpsDecodeError` on the first bad op.

    ``field`` is the name of the array in the request, used in error locations (``ops[2].path``).
    A missing ``ops`` field is the caller's to report (``missing field `ops```, §3.2).
    """
    if not isinstance(raw, list | tuple):
        # A wrong type of a top-level field carries no location (§3.2 table, `"scope": 1`).
        raise OpsDecodeError(invalid_type(raw, "a sequence"))
    return tuple(decode_op(item, f"{field}[{index}]") for index, item in enumerate(raw))


def decode_op(raw: Any, location: str = "ops[0]") -> Op:
    """Decode one op (§6.2); ``location`` prefixes error details (§3.2 rule 2)."""
    if not isinstance(raw, dict):
        raise OpsDecodeError(f"{location}: {invalid_type(raw, 'internally tagged enum UpdateOp')}")
    if "type" not in raw:
        raise OpsDecodeError(f"{location}: missing field `type`")
    op_type = raw["type"]
    if not isinstance(op_type, str):
        raise OpsDecodeError(f"{location}: {invalid_type(op_type, 'variant identifier')}")
    spec = _FIELDS.get(op_type)  # case-sensitive (§6.2)
    if spec is None:
        raise OpsDecodeError(f"{location}: unknown variant `{op_type}`, expected one of {_EXPECTED_VARIANTS}")
    known, required = spec
    path: tuple[str, ...] = ()
    value: Any = None
    by = 0
    # serde reports a bad present field (in input order) before a missing one (declaration order).
    for name, item in raw.items():
        if name not in known:
            continue
        if name == "path":
            if op_type in _SEGMENT_PATH_OPS:
                path = _decode_segment_path(item, location)
            else:
                path = _decode_field_path(item, location)
        elif name == "by":
            by = _decode_by(item, location)
        else:
            value = item
    for name in required:
        if name not in raw:
            raise OpsDecodeError(f"{location}: missing field `{name}`")
    return Op(op_type, path, value, by)


def _decode_field_path(raw: Any, location: str) -> tuple[str, ...]:
    # §6.3: "" is the root; any other string is exactly one top-level key.
    if not isinstance(raw, str):
        raise OpsDecodeError(f"{location}.path: {invalid_type(raw, 'a string')}")
    return (raw,) if raw else ()


def _decode_segment_path(raw: Any, location: str) -> tuple[str, ...]:
    # §6.3: absent, null, "" and [] are the root; "k" is ["k"]; an array lists literal keys.
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,) if raw else ()
    if isinstance(raw, list | tuple) and all(isinstance(segment, str) for segment in raw):
        return tuple(raw)
    raise OpsDecodeError(f"{location}.path: data did not match any variant of untagged enum MergePath")


def _decode_by(raw: Any, location: str) -> int:
    # §3.2, D5: `by` is an i64; booleans (a subclass of int in Python) and floats never are.
    if isinstance(raw, int) and not isinstance(raw, bool):
        if I64_MIN <= raw <= I64_MAX:
            return raw
        if I64_MAX < raw <= U64_MAX:
            raise OpsDecodeError(f"{location}.by: invalid value: integer `{raw}`, expected i64")
    raise OpsDecodeError(f"{location}.by: {invalid_type(raw, 'i64')}")


# --------------------------------------------------------------------------------------------------
# The interpreter (§6.4-§6.6)

_Failure = tuple[str, str]  # (code, message)


class _NoOp:
    """Outcome of the silent root-merge no-op (§6.6.2 step 3): no change, no error, flag kept."""

    __slots__ = ()


_NOOP: Final = _NoOp()
_Outcome = _Failure | _NoOp | None  # None = success


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _path_failure(op_type: str, path: tuple[str, ...], limits: OpLimits) -> _Failure | None:
    """§6.5: validation of a non-root path, in the order of the spec's table."""
    if len(path) > limits.max_path_depth:
        return (
            f"{op_type}.path.too_deep",
            f"Path depth {len(path)} exceeds maximum of {limits.max_path_depth}",
        )
    for segment in path:
        if not segment:
            return f"{op_type}.path.empty_segment", "Path contains an empty segment"
        # A str of n code points encodes to at most 4n UTF-8 bytes: skip encoding short segments.
        if len(segment) * 4 > limits.max_segment_bytes:
            # surrogatepass: a lone surrogate (accepted by Python's json) must not raise here.
            size = len(segment.encode("utf-8", "surrogatepass"))
            if size > limits.max_segment_bytes:
                return (
                    f"{op_type}.path.segment_too_long",
                    f"Path segment of {size} bytes exceeds maximum of {limits.max_segment_bytes}",
                )
        if segment in PROTO_NAMES:
            return (
                f"{op_type}.path.proto_polluted",
                f"Path segment '{segment}' is not allowed (prototype pollution).",
            )
    return None


def _merge_value_failure(value: Any, limits: OpLimits) -> _Failure | None:
    """§6.6.2 step 2: merge-value validation, in the order of the spec's table."""
    if not isinstance(value, dict):
        return "merge.value.not_an_object", "Merge value must be a JSON object"
    if len(value) > limits.max_merge_keys:
        return (
            "merge.value.too_many_keys",
            f"Merge value has {len(value)} top-level keys, exceeds maximum of {limits.max_merge_keys}",
        )
    for key in _PROTO_SORTED:
        if key in value:
            return (
                "merge.value.proto_polluted",
                f'Merge value top-level key "{key}" is a prototype-pollution sink',
            )
    depth = json_depth(value)
    if depth > limits.max_merge_depth:
        return (
            "merge.value.too_deep",
            f"Merge value JSON nesting depth {depth} exceeds maximum of {limits.max_merge_depth}",
        )
    return None


def _arith(current: Any, delta: int) -> int | float | None:
    """§6.6.3 ``arith``: exact integers within [-2^63, 2^64-1], finite doubles; ``None`` on overflow."""
    if isinstance(current, int):
        result = current + delta
        return result if I64_MIN <= result <= U64_MAX else None
    total = current + float(delta)
    return total if math.isfinite(total) else None


class _Batch:
    """The working state of one :func:`apply_ops` call (§6.4).

    ``owned`` holds every container created during this call (keyed by ``id``; holding them keeps
    the ids unique). Only owned containers are ever mutated; anything else (the input value, op
    values) is shallow-copied first. Owned containers are only ever inserted into owned parents,
    so the copy-on-write walk from the root keeps the input intact.
    """

    __slots__ = ("changed", "cur", "missing", "owned")

    def __init__(self, value: Any) -> None:
        self.owned: dict[int, Any] = {}
        self.changed = False
        if value is MISSING:
            # §6.4 rule 1: a missing key starts as {} with the missing flag set.
            self.cur: Any = self._new_dict()
            self.missing = True
        else:
            self.cur = value
            self.missing = False

    # -- copy on write -----------------------------------------------------------------------------

    def _new_dict(self) -> dict[str, Any]:
        created: dict[str, Any] = {}
        self.owned[id(created)] = created
        return created

    def _new_list(self, item: Any) -> list[Any]:
        created = [item]
        self.owned[id(created)] = created
        return created

    def _own_dict(self, node: dict[str, Any]) -> dict[str, Any]:
        if id(node) in self.owned:
            return node
        copy = node.copy()
        self.owned[id(copy)] = copy
        return copy

    def _own_list(self, node: list[Any]) -> list[Any]:
        if id(node) in self.owned:
            return node
        copy = list(node)
        self.owned[id(copy)] = copy
        return copy

    def _root(self) -> dict[str, Any]:
        """The root as a writable dict (the root must be a dict)."""
        root = self._own_dict(self.cur)
        self.cur = root
        self.changed = True
        return root

    def _walk_or_create(self, segments: Sequence[str]) -> dict[str, Any]:
        """§6.6.2 step 4: descend from the (dict) root, replacing missing or non-object nodes with {}."""
        node = self._root()
        for segment in segments:
            child = node.get(segment)
            if isinstance(child, dict):
                writable = self._own_dict(child)
                if writable is not child:
                    node[segment] = writable
            else:
                writable = self._new_dict()
                node[segment] = writable
            node = writable
        return node

    # -- ops (§6.6) ----------------------------------------------------------------------------------

    def set(self, op: Op) -> _Outcome:
        """§6.6.1."""
        if not op.path:
            self.cur = op.value
            self.changed = True
            return None
        key = op.path[0]
        if not isinstance(self.cur, dict):
            return (
                "set.target_not_object",
                f"Cannot set at path '{key}': target is {json_type(self.cur)}, expected object.",
            )
        self._root()[key] = op.value
        return None

    def merge(self, op: Op, limits: OpLimits) -> _Outcome:
        """§6.6.2 (path validation, step 1, has already run)."""
        value = op.value
        failure = _merge_value_failure(value, limits)
        if failure is not None:
            return failure
        if not op.path:
            if not isinstance(self.cur, dict):
                return _NOOP  # step 3: silent no-op on a scalar, array or null root
            if value:
                self._root().update(value)
            return None
        if not isinstance(self.cur, dict):
            self.cur = self._new_dict()  # step 4: a non-object root is replaced
        self._walk_or_create(op.path).update(value)
        return None

    def add(self, op: Op) -> _Outcome:
        """§6.6.3: increment and decrement."""
        op_type = op.type
        delta = op.by if op_type == "increment" else -op.by
        if not op.path:
            if self.missing:
                self.cur = delta
                self.changed = True
                return None
            if not _is_number(self.cur):
                return _not_number(op_type, "root", json_type(self.cur))
            result = _arith(self.cur, delta)
            if result is None:
                return _not_number(op_type, "root", "number")
            self.cur = result
            self.changed = True
            return None
        key = op.path[0]
        if not isinstance(self.cur, dict):
            return (
                f"{op_type}.target_not_object",
                f"Cannot {op_type} at path '{key}': target is {json_type(self.cur)}, expected object.",
            )
        if key not in self.cur:
            self._root()[key] = delta
            return None
        current = self.cur[key]
        if not _is_number(current):  # null is not missing; `by: 0` still checks the type
            return _not_number(op_type, key, json_type(current))
        result = _arith(current, delta)
        if result is None:
            return _not_number(op_type, key, "number")
        self._root()[key] = result
        return None

    def append(self, op: Op) -> _Outcome:
        """§6.6.4 (path validation, step 1, has already run)."""
        path, value = op.path, op.value
        if not path:
            # Step 2: on a missing key the root target is null, not the initial {}.
            target = None if self.missing else self.cur
            outcome = self._append_to(target, value, "root")
            if isinstance(outcome, tuple):
                return outcome
            self.cur = outcome[0]
            self.changed = True
            return None
        if not isinstance(self.cur, dict):
            # Step 3: unlike merge, the root is not replaced.
            return (
                "append.target_not_object",
                f"Cannot append at path '[{', '.join(path)}]': target is {json_type(self.cur)}, "
                "expected object.",
            )
        key = path[-1]
        parent: Any = self.cur
        for segment in path[:-1]:  # read-only walk: a failing op must leave cur untouched
            parent = parent.get(segment)
            if not isinstance(parent, dict):
                parent = None
                break
        new_leaf: Any
        if parent is None or key not in parent:
            # Steps 4 and 5: the initial value; a nested missing leaf is always an array.
            new_leaf = value if isinstance(value, str) and len(path) == 1 else self._new_list(value)
        else:
            outcome = self._append_to(parent[key], value, key)
            if isinstance(outcome, tuple):
                return outcome
            new_leaf = outcome[0]
        self._walk_or_create(path[:-1])[key] = new_leaf
        return None

    def _append_to(self, target: Any, value: Any, label: str) -> list[Any] | _Failure:
        """§6.6.4 target table. Returns ``[new target]`` on success, ``(code, message)`` on failure."""
        if isinstance(target, list):
            writable = self._own_list(target)
            writable.append(value)  # an array value becomes one nested element
            return [writable]
        if isinstance(target, str):
            if isinstance(value, str):
                return [target + value]
            return (
                "append.type_mismatch",
                f"Expected string append value at path '{label}', got {json_type(value)}.",
            )
        if target is None:
            return [value if isinstance(value, str) else self._new_list(value)]
        return (
            "append.type_mismatch",
            f"Cannot append at path '{label}': target is {json_type(target)}, "
            "expected array, string, null, or missing field.",
        )

    def remove(self, op: Op) -> _Outcome:
        """§6.6.5."""
        if not op.path:
            self.cur = None  # the key is kept, holding null
            self.changed = True
            return None
        key = op.path[0]
        if not isinstance(self.cur, dict):
            return (
                "remove.target_not_object",
                f"Cannot remove at path '{key}': target is {json_type(self.cur)}, expected object.",
            )
        if key in self.cur:
            del self._root()[key]
        return None  # removing an absent key is a silent success

    def run(self, op: Op, limits: OpLimits) -> _Outcome:
        """One op: path validation first (§6.5), then the op's own checks and effect (§6.6)."""
        if op.path:  # root paths are not validated
            failure = _path_failure(op.type, op.path, limits)
            if failure is not None:
                return failure
        op_type = op.type
        if op_type == "increment" or op_type == "decrement":
            return self.add(op)
        if op_type == "merge":
            return self.merge(op, limits)
        if op_type == "set":
            return self.set(op)
        if op_type == "append":
            return self.append(op)
        if op_type == "remove":
            return self.remove(op)
        raise AssertionError(f"undecoded op type {op_type!r}")  # Op values come from decode_op


def _not_number(op_type: str, label: str, type_name: str) -> _Failure:
    return f"{op_type}.not_number", f"Expected number at path '{label}', got {type_name}."


def _decoded(ops: Any) -> Sequence[Op]:
    if isinstance(ops, list | tuple) and all(isinstance(op, Op) for op in ops):
        return ops
    return decode_ops(ops)


def apply_ops(value: Any, ops: Any, *, limits: OpLimits = DEFAULT_LIMITS) -> OpResult:
    """Apply update ops to a value (spec/state.md §6) without mutating it.

    ``value`` is the stored JSON value, or :data:`MISSING` for an absent key (§6.4 rule 1).
    ``ops`` is a sequence of :class:`Op` (from :func:`decode_ops`) or the raw wire array, which
    is decoded first; a raw array that does not decode raises :class:`OpsDecodeError` before any
    op runs (§3.2 rule 3). Decode once and pass :class:`Op` values when the ops may be re-run.

    Ops run in order; a failing op adds one error (``op_index`` = its index in ``ops``) and
    leaves the working value unchanged; later ops still run, with no rollback (§6.4).
    """
    decoded = _decoded(ops)
    batch = _Batch(value)
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(decoded):
        outcome = batch.run(op, limits)
        if outcome is None:
            batch.missing = False  # §6.4 rule 3: any success clears the missing flag
        elif isinstance(outcome, tuple):
            code, message = outcome
            errors.append({"op_index": index, "code": code, "message": message, "doc_url": DOC_URL})
    return OpResult(batch.cur, errors, batch.changed)
