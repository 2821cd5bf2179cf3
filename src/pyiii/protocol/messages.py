"""Wire messages of the worker protocol (spec/protocol.md §3), as msgspec structs.

No asyncio, no sockets: bytes in, messages out. Two families share the field names of the spec:

* ``*In`` structs are what the engine decodes from a worker socket. Payload-like fields (``data``,
  ``result``, ``metadata``, ``config``) are ``msgspec.Raw`` (optional ones ``Raw | UnsetType``:
  msgspec cannot decode an object into ``Raw | None``): the engine relays a payload between two
  sockets without decoding and re-encoding it, so it never changes ``data`` (§4.1) and a 20 MiB
  payload costs one copy, not a parse.
* The plain structs (``InvokeFunction``, ``InvocationResult``, ...) carry Python values. The engine
  builds them for workers; the SDK both builds and decodes them; the in-process transport hands them
  across without any JSON at all.

Optional fields default to ``UNSET`` and are omitted on output; a field that must be written even
when null (``data`` on ``invokefunction``, ``config`` on ``registertrigger``, §3.1 rule 4) defaults to
``None`` instead. On input a ``null`` optional field counts as absent (§3.1 rule 3): callers use
:func:`present`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

NULL = Raw(b"null")

#: Binary frames with these 4-byte prefixes are telemetry (§2.4 rule 3, §8).
TELEMETRY_PREFIXES = (b"OTLP", b"LOGS", b"MTRC")


def present(value: Any) -> bool:
    """True when an optional input field carries a value (neither absent nor null)."""
    if type(value) is Raw:
        return bytes(value) != b"null"
    return value is not UNSET and value is not None and not (type(value) is Raw and value == NULL)


def raw_is_null(raw: Raw) -> bool:
    return bytes(raw).strip() == b"null"


# --------------------------------------------------------------------------------------------
# Shared objects (§3.12)


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    message: str = ""
    stacktrace: str | None = None


class Base(msgspec.Struct, tag_field="type"):
    """Every protocol message; the tag is the lowercase ``type`` field."""


# --------------------------------------------------------------------------------------------
# Worker -> engine, as decoded by the engine (payloads kept raw).


class RegisterFunctionIn(Base, tag="registerfunction"):
    id: str
    description: str | None = None
    request_format: Raw | UnsetType = UNSET
    response_format: Raw | UnsetType = UNSET
    metadata: Raw | UnsetType = UNSET
    invocation: Raw | UnsetType = UNSET


class UnregisterFunctionIn(Base, tag="unregisterfunction"):
    id: str


class RegisterTriggerTypeIn(Base, tag="registertriggertype"):
    id: str
    description: str | None = None
    trigger_request_format: Raw | UnsetType = UNSET
    call_request_format: Raw | UnsetType = UNSET
    namespace: str | None = None


class UnregisterTriggerTypeIn(Base, tag="unregistertriggertype"):
    id: str
    namespace: str | None = None


class RegisterTriggerIn(Base, tag="registertrigger"):
    id: str
    trigger_type: str
    function_id: str
    config: Raw = NULL
    metadata: Raw | UnsetType = UNSET
    namespace: str | None = None
    trigger_namespace: str | None = None


class UnregisterTriggerIn(Base, tag="unregistertrigger"):
    id: str
    trigger_type: str | None = None


class TriggerRegistrationResultIn(Base, tag="triggerregistrationresult"):
    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody | None = None


class InvokeFunctionIn(Base, tag="invokefunction"):
    function_id: str
    invocation_id: str | None = None
    data: Raw = NULL
    action: Any = None  # any shape: a bad action is answered with invalid_action (D4), not dropped
    metadata: Raw | UnsetType = UNSET
    traceparent: str | None = None
    baggage: str | None = None
    namespace: str | None = None


class InvocationResultIn(Base, tag="invocationresult"):
    invocation_id: str
    function_id: str = ""
    result: Raw | UnsetType = UNSET
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None


class ReattachIn(Base, tag="reattach"):
    previous_worker_id: str
    reattach_token: str | None = None


class PingIn(Base, tag="ping"):
    pass


class RegisterServiceIn(Base, tag="registerservice"):
    id: str | None = None
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


WorkerMessageIn = (
    RegisterFunctionIn
    | UnregisterFunctionIn
    | RegisterTriggerTypeIn
    | UnregisterTriggerTypeIn
    | RegisterTriggerIn
    | UnregisterTriggerIn
    | TriggerRegistrationResultIn
    | InvokeFunctionIn
    | InvocationResultIn
    | ReattachIn
    | PingIn
    | RegisterServiceIn
)

KNOWN_WORKER_TYPES = frozenset(cls.__struct_config__.tag for cls in WorkerMessageIn.__args__)

#: Sent by SDKs, never acted upon (§3.1): observe traffic and other reference-engine extras.
IGNORED_TYPES = frozenset(
    {"observe", "unobserve", "observerack", "invocationsobserved", "localinvocationstats"}
)


# --------------------------------------------------------------------------------------------
# Messages with Python payloads: engine -> worker, SDK <-> engine, and the in-process transport.


class WorkerRegistered(Base, tag="workerregistered"):
    worker_id: str
    reattach_token: str


class RegisterFunction(Base, tag="registerfunction"):
    id: str
    description: str | UnsetType = UNSET
    request_format: Any = UNSET
    response_format: Any = UNSET
    metadata: Any = UNSET


class UnregisterFunction(Base, tag="unregisterfunction"):
    id: str


class RegisterTriggerType(Base, tag="registertriggertype"):
    id: str
    description: str = ""
    trigger_request_format: Any = UNSET
    call_request_format: Any = UNSET
    namespace: str | UnsetType = UNSET


class UnregisterTriggerType(Base, tag="unregistertriggertype"):
    id: str


class RegisterTrigger(Base, tag="registertrigger"):
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = UNSET
    namespace: str | UnsetType = UNSET
    trigger_namespace: str | UnsetType = UNSET


class UnregisterTrigger(Base, tag="unregistertrigger"):
    id: str
    trigger_type: str | UnsetType = UNSET


class TriggerRegistrationResult(Base, tag="triggerregistrationresult"):
    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody | UnsetType = UNSET


class InvokeFunction(Base, tag="invokefunction", kw_only=True):
    # Field order is wire order: the spec's engine -> target examples put invocation_id first (§3.8).
    invocation_id: str | UnsetType = UNSET
    function_id: str
    data: Any = None
    action: Any = UNSET
    metadata: Any = UNSET
    traceparent: str | UnsetType = UNSET
    baggage: str | UnsetType = UNSET
    namespace: str | UnsetType = UNSET


class InvocationResult(Base, tag="invocationresult"):
    invocation_id: str
    function_id: str
    result: Any = UNSET
    error: ErrorBody | UnsetType = UNSET
    traceparent: str | UnsetType = UNSET
    baggage: str | UnsetType = UNSET


class Reattach(Base, tag="reattach"):
    previous_worker_id: str
    reattach_token: str | UnsetType = UNSET


class RegistrationRejected(Base, tag="registrationrejected"):
    code: str
    namespace: str
    function_id: str
    owner_worker_id: str = ""


class Ping(Base, tag="ping"):
    pass


class Pong(Base, tag="pong"):
    pass


class ErrorMessage(Base, tag="error"):
    error: ErrorBody


#: What the SDK receives from the engine.
EngineMessage = (
    WorkerRegistered
    | RegisterTrigger
    | UnregisterTrigger
    | TriggerRegistrationResult
    | InvokeFunction
    | InvocationResult
    | RegistrationRejected
    | Pong
    | ErrorMessage
)

#: What the SDK sends to the engine (and what the in-process transport hands to it directly).
WorkerMessage = (
    RegisterFunction
    | UnregisterFunction
    | RegisterTriggerType
    | UnregisterTriggerType
    | RegisterTrigger
    | UnregisterTrigger
    | TriggerRegistrationResult
    | InvokeFunction
    | InvocationResult
    | Reattach
    | Ping
)
