"""The worker-socket codec with literal frames (spec/protocol.md §3): decode, classify, encode.

The worker → engine frames are the ones the spec quotes from the official SDKs, byte for byte; the
engine → worker encodings must equal the spec's examples byte for byte.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET, Raw

from pyiii.protocol.codec import (
    Ignored,
    Malformed,
    decode_worker_frame,
    encode,
    find_channel_ref_spelling,
    may_hold_channel_ref,
)
from pyiii.protocol.messages import (
    ErrorBody,
    ErrorMessage,
    InvocationResult,
    InvocationResultIn,
    InvokeFunction,
    InvokeFunctionIn,
    PingIn,
    Pong,
    ReattachIn,
    RegisterFunctionIn,
    RegisterServiceIn,
    RegisterTrigger,
    RegisterTriggerIn,
    RegisterTriggerTypeIn,
    RegistrationRejected,
    TriggerRegistrationResult,
    TriggerRegistrationResultIn,
    UnregisterFunctionIn,
    UnregisterTrigger,
    UnregisterTriggerIn,
    UnregisterTriggerTypeIn,
    WorkerRegistered,
    present,
)


def raw(value: object) -> bytes:
    """The bytes of a relayed payload field."""
    assert isinstance(value, Raw), value
    return bytes(value)


def decode(frame: str | bytes) -> object:
    return decode_worker_frame(frame.encode() if isinstance(frame, str) else frame)


# --------------------------------------------------------------------------------------------
# Worker -> engine: the SDK frames quoted in the spec


def test_registerfunction_python_frame() -> None:
    """§3.3: the Python SDK's registerfunction decodes with its description and metadata."""
    msg = decode('{"id":"py::echo","description":"echo","metadata":{"team":"lab"},"type":"registerfunction"}')
    assert isinstance(msg, RegisterFunctionIn)
    assert msg.id == "py::echo"
    assert msg.description == "echo"
    assert raw(msg.metadata) == b'{"team":"lab"}'
    assert not present(msg.request_format) and not present(msg.invocation)


def test_registerfunction_node_frame() -> None:
    """§3.3: the Node SDK's registerfunction (type first) decodes the same way."""
    msg = decode(
        '{"type":"registerfunction","description":"node echo","metadata":{"team":"lab"},"id":"node::echo"}'
    )
    assert isinstance(msg, RegisterFunctionIn)
    assert (msg.id, msg.description) == ("node::echo", "node echo")
    assert raw(msg.metadata) == b'{"team":"lab"}'


def test_registerfunction_with_formats_and_extra_keys() -> None:
    """§3.3: schemas are kept raw; keys the Node SDK spreads in from user options are ignored."""
    msg = decode(
        '{"type":"registerfunction","id":"a::b","request_format":{"type":"object"},'
        '"response_format":{"type":"string"},"timeout":5,"observe":{"x":1}}'
    )
    assert isinstance(msg, RegisterFunctionIn)
    assert raw(msg.request_format) == b'{"type":"object"}'
    assert raw(msg.response_format) == b'{"type":"string"}'


def test_registerfunction_with_http_invocation_is_flagged() -> None:
    """§3.3/D15: an ``invocation`` object is decoded so the engine can refuse the function."""
    msg = decode('{"type":"registerfunction","id":"a::b","invocation":{"url":"http://x"}}')
    assert isinstance(msg, RegisterFunctionIn)
    assert present(msg.invocation)


def test_registertriggertype_frame() -> None:
    """§3.4: the SDK's registertriggertype decodes; namespace absent."""
    msg = decode('{"id":"pytype","description":"py custom type","type":"registertriggertype"}')
    assert isinstance(msg, RegisterTriggerTypeIn)
    assert (msg.id, msg.description) == ("pytype", "py custom type")
    assert not present(msg.namespace)
    assert not present(msg.trigger_request_format) and not present(msg.call_request_format)


def test_registertriggertype_with_formats() -> None:
    """§3.4: trigger and call request formats are kept raw."""
    msg = decode(
        '{"type":"registertriggertype","id":"t","description":"","trigger_request_format":{"a":1},'
        '"call_request_format":[1],"namespace":"orders"}'
    )
    assert isinstance(msg, RegisterTriggerTypeIn)
    assert raw(msg.trigger_request_format) == b'{"a":1}'
    assert raw(msg.call_request_format) == b"[1]"
    assert msg.namespace == "orders"


def test_registertrigger_python_frame_with_config_and_metadata() -> None:
    """§3.5: the Python SDK's registertrigger keeps config and metadata raw."""
    msg = decode(
        '{"id":"6d884627-9db2-4811-a132-c70630b8f1d5","trigger_type":"pytype","function_id":"py::echo",'
        '"config":{"x":1},"metadata":{"m":2},"type":"registertrigger"}'
    )
    assert isinstance(msg, RegisterTriggerIn)
    assert (msg.id, msg.trigger_type, msg.function_id) == (
        "6d884627-9db2-4811-a132-c70630b8f1d5",
        "pytype",
        "py::echo",
    )
    assert raw(msg.config) == b'{"x":1}'
    assert raw(msg.metadata) == b'{"m":2}'
    assert not present(msg.namespace) and not present(msg.trigger_namespace)


def test_registertrigger_without_config_is_null() -> None:
    """D2: a registertrigger without ``config`` decodes with config ``null``."""
    msg = decode(
        '{"id":"52865ba6-fa72-4ba1-804c-837fd551bc49","trigger_type":"http","function_id":"py::echo",'
        '"type":"registertrigger"}'
    )
    assert isinstance(msg, RegisterTriggerIn)
    assert raw(msg.config) == b"null"
    assert not present(msg.metadata)


def test_registertrigger_node_frame_with_stray_message_type() -> None:
    """§3.1 rule 2: Node's stray ``message_type`` on registertrigger is ignored."""
    msg = decode(
        '{"type":"registertrigger","function_id":"node::echo","config":{"y":1},"metadata":{"m":1},'
        '"id":"33e80e75-8752-4850-9f44-a0e0d485c653","message_type":"registertrigger","trigger_type":"nodetype"}'
    )
    assert isinstance(msg, RegisterTriggerIn)
    assert (msg.trigger_type, msg.function_id) == ("nodetype", "node::echo")
    assert raw(msg.config) == b'{"y":1}'
    assert raw(msg.metadata) == b'{"m":1}'


def test_registertrigger_with_namespaces() -> None:
    """§3.5: ``namespace`` and ``trigger_namespace`` decode as strings."""
    msg = decode(
        '{"type":"registertrigger","id":"b1","trigger_type":"t","function_id":"f","config":null,'
        '"namespace":"orders","trigger_namespace":"infra"}'
    )
    assert isinstance(msg, RegisterTriggerIn)
    assert (msg.namespace, msg.trigger_namespace) == ("orders", "infra")


def test_unregister_frames() -> None:
    """§3.6: the four unregister frames of the spec decode; Node's extra keys are ignored."""
    fn = decode('{"id":"py::temp","type":"unregisterfunction"}')
    assert isinstance(fn, UnregisterFunctionIn) and fn.id == "py::temp"
    tt = decode('{"type":"unregistertriggertype","id":"nodetype","description":"node custom type"}')
    assert isinstance(tt, UnregisterTriggerTypeIn) and tt.id == "nodetype"
    py = decode(
        '{"id":"6d884627-9db2-4811-a132-c70630b8f1d5","type":"unregistertrigger","trigger_type":"pytype"}'
    )
    assert isinstance(py, UnregisterTriggerIn)
    assert (py.id, py.trigger_type) == ("6d884627-9db2-4811-a132-c70630b8f1d5", "pytype")
    node = decode(
        '{"type":"unregistertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype",'
        '"message_type":"unregistertrigger"}'
    )
    assert isinstance(node, UnregisterTriggerIn) and node.trigger_type == "nodetype"


def test_triggerregistrationresult_frames() -> None:
    """§3.7: success (no error) and error verdicts decode; Node's ``message_type`` is ignored."""
    ok = decode(
        '{"type":"triggerregistrationresult","id":"6d884627-9db2-4811-a132-c70630b8f1d5","trigger_type":"pytype",'
        '"function_id":"py::echo","message_type":"triggerregistrationresult"}'
    )
    assert isinstance(ok, TriggerRegistrationResultIn)
    assert not present(ok.error)
    bad = decode(
        '{"type":"triggerregistrationresult","id":"d4d8d815-3b93-403d-ae02-1c3145315513","trigger_type":"pytype",'
        '"function_id":"py::echo","error":{"code":"trigger_registration_failed","message":"bad config"}}'
    )
    assert isinstance(bad, TriggerRegistrationResultIn)
    assert bad.error == ErrorBody(code="trigger_registration_failed", message="bad config")


def test_invokefunction_with_data_and_metadata() -> None:
    """§3.8: a request/response call keeps data and metadata raw."""
    msg = decode(
        '{"function_id":"py::echo","data":{"a":1},"metadata":{"sess":"s1"},'
        '"invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86","type":"invokefunction"}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    assert (msg.function_id, msg.invocation_id) == ("py::echo", "e8ea8b1b-2261-490d-9269-b056c214ec86")
    assert raw(msg.data) == b'{"a":1}'
    assert raw(msg.metadata) == b'{"sess":"s1"}'
    assert not present(msg.action) and not present(msg.namespace)


def test_invokefunction_void() -> None:
    """§3.8: a Void call has an action and no invocation_id."""
    msg = decode('{"function_id":"py::echo","data":{"v":1},"action":{"type":"void"},"type":"invokefunction"}')
    assert isinstance(msg, InvokeFunctionIn)
    assert not present(msg.invocation_id)
    assert msg.action == {"type": "void"}


def test_invokefunction_enqueue() -> None:
    """§3.8: an Enqueue call names its queue."""
    msg = decode(
        '{"function_id":"py::echo","data":{"q":1},"invocation_id":"5aeca3e5-c4b2-466c-b20c-7e0cb7032af5",'
        '"action":{"type":"enqueue","queue":"jobs"},"type":"invokefunction"}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    assert msg.action == {"type": "enqueue", "queue": "jobs"}


def test_invokefunction_without_data_is_null() -> None:
    """D1: an invokefunction without ``data`` decodes with data ``null``."""
    msg = decode(
        '{"function_id":"node::echo","invocation_id":"1f1e0955-5d3c-4b6a-b4ea-971ac240da3d","type":"invokefunction"}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    assert raw(msg.data) == b"null"


def test_invokefunction_with_namespace() -> None:
    """§3.8: the SDK's call to ``engine::functions::list`` carries ``namespace``."""
    msg = decode(
        '{"function_id":"engine::functions::list","data":{},"invocation_id":"47e6a793-0a88-483f-962d-620472c4dd60",'
        '"namespace":"default","type":"invokefunction"}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    assert msg.namespace == "default"
    assert raw(msg.data) == b"{}"


def test_invokefunction_trace_context_and_ignored_fields() -> None:
    """§3.8: traceparent and baggage decode; ``caller``, ``observe_depth``, ``activation`` are ignored."""
    msg = decode(
        '{"type":"invokefunction","function_id":"f","invocation_id":"i","data":1,'
        '"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","baggage":"k=v",'
        '"caller":{"id":"x"},"observe_depth":3,"activation":"y"}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    assert msg.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert msg.baggage == "k=v"


def test_workers_register_frames() -> None:
    """§7.1: both SDKs' ``engine::workers::register`` Void calls decode with their payload intact."""
    py = (
        '{"function_id":"engine::workers::register","data":{"runtime":"python","version":"0.25.0","name":"py-lab",'
        '"os":"Linux 6.8.0 (x86_64)","pid":20319,"isolation":null,"namespace":null,'
        '"telemetry":{"language":"C","project_name":"lab","framework":"iii-py"},"features":["observe.v1","local-dispatch.v1",'
        '"large-messages.v1"],"description":"lab worker"},"action":{"type":"void"},"type":"invokefunction"}'
    )
    node = (
        '{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"node",'
        '"version":"0.22.1","name":"node-lab","description":"node lab","os":"linux 6.8.0 (x64)","pid":20270,'
        '"isolation":null,"telemetry":{"language":"en-US","project_name":"nodeproj","framework":"iii-node"}},'
        '"action":{"type":"void"}}'
    )
    for frame in (py, node):
        msg = decode(frame)
        assert isinstance(msg, InvokeFunctionIn)
        assert msg.function_id == "engine::workers::register"
        assert json.loads(raw(msg.data)) == json.loads(frame)["data"]


def test_invocationresult_frames() -> None:
    """§3.9: success, error and enqueue-receipt results decode; the result stays raw."""
    ok = decode(
        '{"type":"invocationresult","invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86","function_id":"py::echo",'
        '"result":{"got":{"a":1},"meta":{"sess":"s1"}}}'
    )
    assert isinstance(ok, InvocationResultIn)
    assert raw(ok.result) == b'{"got":{"a":1},"meta":{"sess":"s1"}}'
    assert not present(ok.error)
    err = decode(
        '{"type":"invocationresult","invocation_id":"853f5558-2baf-49d5-ad5e-0a70e31eee47","function_id":"nope::x",'
        '"error":{"code":"function_not_found","message":"Function nope::x not found in namespace default."}}'
    )
    assert isinstance(err, InvocationResultIn)
    assert err.error == ErrorBody("function_not_found", "Function nope::x not found in namespace default.")


def test_invocationresult_without_result_is_success() -> None:
    """§3.9/§6.5 rule 6: neither result nor error means success with null."""
    msg = decode('{"type":"invocationresult","invocation_id":"i","function_id":"f"}')
    assert isinstance(msg, InvocationResultIn)
    assert msg.result is UNSET and not present(msg.error)


def test_invocationresult_with_stacktrace_and_trace_context() -> None:
    """§3.9: an error's stacktrace and the trace context decode."""
    msg = decode(
        '{"type":"invocationresult","invocation_id":"i","function_id":"f","error":{"code":"invocation_failed",'
        '"message":"boom","stacktrace":"Traceback ..."},"traceparent":"tp","baggage":"b"}'
    )
    assert isinstance(msg, InvocationResultIn)
    assert msg.error == ErrorBody("invocation_failed", "boom", "Traceback ...")
    assert (msg.traceparent, msg.baggage) == ("tp", "b")


def test_reattach_frame() -> None:
    """§3.10: reattach with and without a token."""
    msg = decode(
        '{"type":"reattach","previous_worker_id":"fdceeb8a-ba21-40d5-86a0-a154d62b6ee8",'
        '"reattach_token":"ab9998fa-64f9-436c-b28f-132196f94089"}'
    )
    assert isinstance(msg, ReattachIn)
    assert msg.reattach_token == "ab9998fa-64f9-436c-b28f-132196f94089"
    bare = decode('{"type":"reattach","previous_worker_id":"fdceeb8a-ba21-40d5-86a0-a154d62b6ee8"}')
    assert isinstance(bare, ReattachIn) and not present(bare.reattach_token)


def test_ping_and_registerservice() -> None:
    """§2.4 rule 7 and §6.5 rule 5: JSON ping and the 0.11 ``registerservice`` decode."""
    assert isinstance(decode('{"type":"ping"}'), PingIn)
    svc = decode('{"type":"registerservice","id":"svc","name":"svc","parent_service_id":null}')
    assert isinstance(svc, RegisterServiceIn) and svc.id == "svc"


def test_binary_frame_decodes_as_json() -> None:
    """§2.4 rule 3: a non-telemetry binary frame is a JSON protocol message."""
    assert isinstance(decode_worker_frame(b'{"type":"ping"}'), PingIn)
    assert isinstance(decode_worker_frame(bytearray(b'{"type":"ping"}')), PingIn)


# --------------------------------------------------------------------------------------------
# null optional fields (§3.1 rule 3)


def test_null_optional_fields_count_as_absent() -> None:
    """§3.1 rule 3: every optional field sent as ``null`` counts as absent."""
    fn = decode(
        '{"type":"registerfunction","id":"a::b","description":null,"request_format":null,'
        '"response_format":null,"metadata":null,"invocation":null}'
    )
    assert isinstance(fn, RegisterFunctionIn)
    for value in (fn.description, fn.request_format, fn.response_format, fn.metadata, fn.invocation):
        assert not present(value)
    inv = decode(
        '{"type":"invokefunction","function_id":"f","invocation_id":null,"data":null,"action":null,'
        '"metadata":null,"traceparent":null,"baggage":null,"namespace":null}'
    )
    assert isinstance(inv, InvokeFunctionIn)
    for value in (inv.invocation_id, inv.action, inv.metadata, inv.traceparent, inv.baggage, inv.namespace):
        assert not present(value)
    trig = decode(
        '{"type":"registertrigger","id":"b","trigger_type":"t","function_id":"f","config":null,"metadata":null,'
        '"namespace":null,"trigger_namespace":null}'
    )
    assert isinstance(trig, RegisterTriggerIn)
    assert raw(trig.config) == b"null"
    for value in (trig.metadata, trig.namespace, trig.trigger_namespace):
        assert not present(value)
    tt = decode(
        '{"type":"registertriggertype","id":"t","description":null,"trigger_request_format":null,'
        '"call_request_format":null,"namespace":null}'
    )
    assert isinstance(tt, RegisterTriggerTypeIn)
    for value in (tt.description, tt.trigger_request_format, tt.call_request_format, tt.namespace):
        assert not present(value)
    res = decode(
        '{"type":"invocationresult","invocation_id":"i","function_id":"f","error":null,"traceparent":null}'
    )
    assert isinstance(res, InvocationResultIn)
    assert not present(res.error) and not present(res.traceparent)
    verdict = decode(
        '{"type":"triggerregistrationresult","id":"b","trigger_type":"t","function_id":"f","error":null}'
    )
    assert isinstance(verdict, TriggerRegistrationResultIn) and not present(verdict.error)
    again = decode('{"type":"reattach","previous_worker_id":"w","reattach_token":null}')
    assert isinstance(again, ReattachIn) and not present(again.reattach_token)


def test_non_null_payload_fields_are_present() -> None:
    """A payload-like field with a value (object, array, scalar, false, 0, "") is present."""
    for value in ('{"a":1}', "[]", "0", "false", '""', '"x"'):
        msg = decode(f'{{"type":"invokefunction","function_id":"f","metadata":{value}}}')
        assert isinstance(msg, InvokeFunctionIn), (value, msg)
        assert present(msg.metadata), value
        assert raw(msg.metadata) == value.encode()


# --------------------------------------------------------------------------------------------
# Ignored vs Malformed


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"   \n\t ",
        b"{",
        b"not json",
        b'{"type":"ping"',
        b"\xff\xfe\x00",
        b'{"type":"ping"}\xff',
        b"null",
        b"42",
        b'"invokefunction"',
        b"[]",
        b'[{"type":"ping"}]',
        b"{}",
        b'{"id":"x"}',
        b'{"type":5}',
        b'{"type":null}',
        b'{"type":["ping"]}',
        b'{"type":"bogus","id":"x"}',
        b'{"type":"InvokeFunction","function_id":"f","invocation_id":"i"}',
        b'{"type":"invoke_function","function_id":"f","invocation_id":"i"}',
        b'{"type":"functionregistered","id":"f"}',
        b'{"type":"workerregistered","worker_id":"w","reattach_token":"t"}',
        b'{"type":"observe","id":"o"}',
        b'{"type":"unobserve"}',
        b'{"type":"observerack"}',
        b'{"type":"invocationsobserved"}',
        b'{"type":"localinvocationstats","stats":[]}',
    ],
)
def test_ignored_frames(frame: bytes) -> None:
    """§2.4 rule 2, §3.1 rule 2: empty, invalid JSON, non-objects and unknown types are Ignored."""
    assert isinstance(decode_worker_frame(frame), Ignored)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"invokefunction","function_id":"f","invocation_id":"i","data":"\xff\xfe"}',
        b'{"type":"invokefunction","function_id":"f","invocation_id":"i","data":{"k":"\xc3"}}',
        b'{"type":"invokefunction","function_id":"f","invocation_id":"i","metadata":["\xed\xa0\x80"]}',
        b'{"type":"invocationresult","invocation_id":"i","function_id":"f","result":"\x80"}',
        b'{"type":"registertrigger","id":"b","trigger_type":"t","function_id":"f","config":{"\xff":1}}',
        b'{"type":"registerfunction","id":"f","request_format":"\xc0\xaf"}',
    ],
)
def test_invalid_utf8_inside_payloads_is_ignored(frame: bytes) -> None:
    """§6.5 rule 2: JSON must be UTF-8, so a payload with invalid UTF-8 makes the frame undecodable."""
    assert isinstance(decode_worker_frame(frame), Ignored)


def test_valid_non_ascii_payloads_decode() -> None:
    """Non-ASCII UTF-8 (as the Node SDK writes it, unescaped) is accepted and relayed byte for byte."""
    frame = '{"type":"invokefunction","function_id":"f","invocation_id":"i","data":"héllo ☃ 𝄞"}'.encode()
    msg = decode_worker_frame(frame)
    assert isinstance(msg, InvokeFunctionIn)
    assert raw(msg.data) == '"héllo ☃ 𝄞"'.encode()


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_ignored_not_raised(depth: int) -> None:
    """Undecodable JSON never raises out of the codec, however deep it nests (§2.4 rule 2)."""
    assert isinstance(decode_worker_frame(b"[" * depth + b"]" * depth), Ignored)
    nested = b'{"type":"invokefunction","function_id":"f","invocation_id":"i","data":' + b"[" * depth
    nested += b"]" * depth + b"}"
    result = decode_worker_frame(nested)
    assert isinstance(result, Ignored | Malformed)


@pytest.mark.parametrize(
    ("frame", "kind", "invocation_id", "function_id"),
    [
        (b'{"type":"invokefunction","invocation_id":"i1"}', "invokefunction", "i1", None),
        (b'{"type":"invokefunction","invocation_id":"i1","function_id":5}', "invokefunction", "i1", None),
        (b'{"type":"invokefunction","invocation_id":"i1","function_id":null}', "invokefunction", "i1", None),
        (b'{"type":"invokefunction","invocation_id":5,"function_id":"f"}', "invokefunction", None, "f"),
        (b'{"type":"invokefunction","invocation_id":"","data":1}', "invokefunction", None, None),
        (
            b'{"type":"invokefunction","function_id":"f","invocation_id":"i2","traceparent":7}',
            "invokefunction",
            "i2",
            "f",
        ),
        (
            b'{"type":"invokefunction","function_id":"f","invocation_id":"i3","namespace":{}}',
            "invokefunction",
            "i3",
            "f",
        ),
        (b'{"type":"invocationresult","function_id":"f"}', "invocationresult", None, "f"),
        (b'{"type":"invocationresult","invocation_id":"i4","error":"boom"}', "invocationresult", "i4", None),
        (
            b'{"type":"invocationresult","invocation_id":"i5","error":{"message":"no code"}}',
            "invocationresult",
            "i5",
            None,
        ),
        (b'{"type":"registerfunction"}', "registerfunction", None, None),
        (b'{"type":"registerfunction","id":7}', "registerfunction", None, None),
        (b'{"type":"registerfunction","id":"a::b","description":5}', "registerfunction", None, None),
        (b'{"type":"unregisterfunction","id":[]}', "unregisterfunction", None, None),
        (b'{"type":"registertriggertype","description":"no id"}', "registertriggertype", None, None),
        (b'{"type":"registertrigger","id":"b","trigger_type":"t"}', "registertrigger", None, None),
        (
            b'{"type":"registertrigger","id":"b","trigger_type":1,"function_id":"f"}',
            "registertrigger",
            None,
            "f",
        ),
        (b'{"type":"unregistertrigger"}', "unregistertrigger", None, None),
        (b'{"type":"triggerregistrationresult","id":"b"}', "triggerregistrationresult", None, None),
        (b'{"type":"reattach"}', "reattach", None, None),
        (b'{"type":"reattach","previous_worker_id":1}', "reattach", None, None),
        (b'{"type":"registerservice","id":1}', "registerservice", None, None),
    ],
)
def test_malformed_frames(
    frame: bytes, kind: str, invocation_id: str | None, function_id: str | None
) -> None:
    """A known type with bad fields is Malformed, with any non-empty string invocation_id/function_id (D5)."""
    result = decode_worker_frame(frame)
    assert isinstance(result, Malformed), result
    assert (result.type, result.invocation_id, result.function_id) == (kind, invocation_id, function_id)
    assert result.reason


def test_invalid_actions_reach_the_engine() -> None:
    """D4: an action of any shape decodes, so the engine answers ``invalid_action``, not a decode error."""
    for action in (
        '{"type":"bogus"}',
        '{"type":"enqueue"}',
        '{"type":"enqueue","queue":5}',
        '"void"',
        "[]",
        "7",
    ):
        msg = decode(f'{{"type":"invokefunction","function_id":"f","invocation_id":"i","action":{action}}}')
        assert isinstance(msg, InvokeFunctionIn), (action, msg)
        assert present(msg.action)


@given(st.binary(max_size=256))
def test_decode_never_raises_on_random_bytes(frame: bytes) -> None:
    """Any bytes decode to a message, Ignored or Malformed: the codec never raises."""
    decode_worker_frame(frame)


# --------------------------------------------------------------------------------------------
# Engine -> worker: encodings equal the spec's examples byte for byte


def test_encode_workerregistered() -> None:
    """§3.2: ``workerregistered`` has worker_id and reattach_token, and no ``features``."""
    msg = WorkerRegistered(
        worker_id="fdceeb8a-ba21-40d5-86a0-a154d62b6ee8",
        reattach_token="ab9998fa-64f9-436c-b28f-132196f94089",
    )
    assert encode(msg) == (
        b'{"type":"workerregistered","worker_id":"fdceeb8a-ba21-40d5-86a0-a154d62b6ee8",'
        b'"reattach_token":"ab9998fa-64f9-436c-b28f-132196f94089"}'
    )


def test_encode_registertrigger_to_provider() -> None:
    """§3.5: engine → provider registertrigger; namespaces omitted when unset."""
    msg = RegisterTrigger(
        id="33e80e75-8752-4850-9f44-a0e0d485c653",
        trigger_type="nodetype",
        function_id="node::echo",
        config={"y": 1},
        metadata={"m": 1},
    )
    assert encode(msg) == (
        b'{"type":"registertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype",'
        b'"function_id":"node::echo","config":{"y":1},"metadata":{"m":1}}'
    )


def test_encode_registertrigger_always_writes_config() -> None:
    """§3.1 rule 4: ``config`` is written even when null; metadata and namespaces are omitted."""
    msg = RegisterTrigger(id="b1", trigger_type="t", function_id="f")
    assert (
        encode(msg)
        == b'{"type":"registertrigger","id":"b1","trigger_type":"t","function_id":"f","config":null}'
    )
    relayed = RegisterTrigger(id="b1", trigger_type="t", function_id="f", config=Raw(b"null"))
    assert encode(relayed) == encode(msg)


def test_encode_unregistertrigger_to_provider() -> None:
    """§3.6: engine → provider unregistertrigger has only id and trigger_type."""
    msg = UnregisterTrigger(id="33e80e75-8752-4850-9f44-a0e0d485c653", trigger_type="nodetype")
    assert encode(msg) == (
        b'{"type":"unregistertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype"}'
    )


def test_encode_triggerregistrationresult_error() -> None:
    """§3.7: an error verdict; no stacktrace key when there is none."""
    msg = TriggerRegistrationResult(
        id="d4d8d815-3b93-403d-ae02-1c3145315513",
        trigger_type="pytype",
        function_id="py::echo",
        error=ErrorBody(code="trigger_registration_failed", message="bad config"),
    )
    assert encode(msg) == (
        b'{"type":"triggerregistrationresult","id":"d4d8d815-3b93-403d-ae02-1c3145315513","trigger_type":"pytype",'
        b'"function_id":"py::echo","error":{"code":"trigger_registration_failed","message":"bad config"}}'
    )


def test_encode_invokefunction_to_target() -> None:
    """§3.8: engine → target has invocation_id, function_id, data, metadata; never action or namespace."""
    msg = InvokeFunction(
        invocation_id="d4ae6e40-5c13-4bea-a613-1b7173ccc940",
        function_id="node::echo",
        data=Raw(b'{"a":1}'),
        metadata=Raw(b'{"s":1}'),
    )
    assert encode(msg) == (
        b'{"type":"invokefunction","invocation_id":"d4ae6e40-5c13-4bea-a613-1b7173ccc940",'
        b'"function_id":"node::echo","data":{"a":1},"metadata":{"s":1}}'
    )


def test_encode_invokefunction_always_writes_data() -> None:
    """§3.1 rule 4: ``data`` is written even when null; optional fields are omitted."""
    msg = InvokeFunction(invocation_id="1f1e0955-5d3c-4b6a-b4ea-971ac240da3d", function_id="node::echo")
    expected = (
        b'{"type":"invokefunction","invocation_id":"1f1e0955-5d3c-4b6a-b4ea-971ac240da3d",'
        b'"function_id":"node::echo","data":null}'
    )
    assert encode(msg) == expected
    relayed = InvokeFunction(
        invocation_id="1f1e0955-5d3c-4b6a-b4ea-971ac240da3d", function_id="node::echo", data=Raw(b"null")
    )
    assert encode(relayed) == expected


def test_encode_invokefunction_with_trace_context() -> None:
    """§4.1 step 5: traceparent and baggage follow the payload when set."""
    msg = InvokeFunction(invocation_id="i", function_id="f", data=1, traceparent="tp", baggage="b")
    assert encode(msg) == (
        b'{"type":"invokefunction","invocation_id":"i","function_id":"f","data":1,"traceparent":"tp","baggage":"b"}'
    )


def test_encode_invocationresult_success() -> None:
    """§3.9: a success result to the caller."""
    msg = InvocationResult(
        invocation_id="e8ea8b1b-2261-490d-9269-b056c214ec86",
        function_id="py::echo",
        result=Raw(b'{"got":{"a":1},"meta":{"sess":"s1"}}'),
    )
    assert encode(msg) == (
        b'{"type":"invocationresult","invocation_id":"e8ea8b1b-2261-490d-9269-b056c214ec86",'
        b'"function_id":"py::echo","result":{"got":{"a":1},"meta":{"sess":"s1"}}}'
    )


def test_encode_invocationresult_null_result_is_written() -> None:
    """§3.9: a null success writes ``"result":null`` explicitly."""
    assert encode(InvocationResult(invocation_id="i", function_id="f", result=None)) == (
        b'{"type":"invocationresult","invocation_id":"i","function_id":"f","result":null}'
    )
    assert encode(InvocationResult(invocation_id="i", function_id="f", result=Raw(b"null"))) == (
        b'{"type":"invocationresult","invocation_id":"i","function_id":"f","result":null}'
    )


def test_encode_invocationresult_without_result_omits_it() -> None:
    """§3.9: a built-in's "no result" has no ``result`` field."""
    assert encode(InvocationResult(invocation_id="i", function_id="f")) == (
        b'{"type":"invocationresult","invocation_id":"i","function_id":"f"}'
    )


def test_encode_invocationresult_errors() -> None:
    """§3.9: an error result has no ``result``; the stacktrace only when there is one."""
    msg = InvocationResult(
        invocation_id="853f5558-2baf-49d5-ad5e-0a70e31eee47",
        function_id="nope::x",
        error=ErrorBody(
            code="function_not_found", message="Function nope::x not found in namespace default."
        ),
    )
    assert encode(msg) == (
        b'{"type":"invocationresult","invocation_id":"853f5558-2baf-49d5-ad5e-0a70e31eee47","function_id":"nope::x",'
        b'"error":{"code":"function_not_found","message":"Function nope::x not found in namespace default."}}'
    )
    traced = InvocationResult(
        invocation_id="i",
        function_id="f",
        error=ErrorBody("invocation_failed", "boom", "Traceback"),
        traceparent="tp",
    )
    assert encode(traced) == (
        b'{"type":"invocationresult","invocation_id":"i","function_id":"f",'
        b'"error":{"code":"invocation_failed","message":"boom","stacktrace":"Traceback"},"traceparent":"tp"}'
    )


def test_encode_enqueue_receipt() -> None:
    """§3.9: the Enqueue reply."""
    msg = InvocationResult(
        invocation_id="7839db20-d3fc-4dd3-88af-2bf5fd185c4b",
        function_id="node::echo",
        result={"messageReceiptId": "d5c38c26-9db0-4aea-9cf6-a14827885697"},
    )
    assert encode(msg) == (
        b'{"type":"invocationresult","invocation_id":"7839db20-d3fc-4dd3-88af-2bf5fd185c4b","function_id":"node::echo",'
        b'"result":{"messageReceiptId":"d5c38c26-9db0-4aea-9cf6-a14827885697"}}'
    )


def test_encode_registrationrejected() -> None:
    """§3.11: ``owner_worker_id`` is always written, empty."""
    msg = RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT", namespace="default", function_id="state::set"
    )
    assert encode(msg) == (
        b'{"type":"registrationrejected","code":"FUNCTION_NAMESPACE_CONFLICT","namespace":"default",'
        b'"function_id":"state::set","owner_worker_id":""}'
    )


def test_encode_auth_error_and_pong() -> None:
    """§2.2 rule 4 and §2.4 rule 7: the auth failure frame and the JSON pong."""
    error = ErrorMessage(error=ErrorBody(code="AUTH_ERROR", message="missing or invalid bearer token"))
    assert (
        encode(error)
        == b'{"type":"error","error":{"code":"AUTH_ERROR","message":"missing or invalid bearer token"}}'
    )
    assert encode(Pong()) == b'{"type":"pong"}'


def test_relayed_payload_bytes_are_unchanged() -> None:
    """§4.1: a relayed payload keeps its exact bytes (spacing, key order, number spelling)."""
    msg = decode(
        '{"type":"invokefunction","function_id":"f","invocation_id":"i","data":{ "b" : 1.50, "a":[1 ,2] }}'
    )
    assert isinstance(msg, InvokeFunctionIn)
    out = encode(InvokeFunction(invocation_id="i", function_id="f", data=msg.data))
    assert out == (
        b'{"type":"invokefunction","invocation_id":"i","function_id":"f","data":{ "b" : 1.50, "a":[1 ,2] }}'
    )


# ------------------------------------------------------------------------------ channel ref scan


_REF_SPELLINGS = [b'{"channel_id":1}', b'{"\\u0063hannel_id":1}', b"\\u", b"x"]


@given(st.binary(max_size=64) | st.sampled_from(_REF_SPELLINGS))
def test_the_two_channel_ref_scans_agree(text: bytes) -> None:
    """``may_hold_channel_ref`` (bytes.find) and ``find_channel_ref_spelling`` (a regex, any buffer)
    give the same answer."""
    assert may_hold_channel_ref(text) is (find_channel_ref_spelling(memoryview(text)) is not None)


def test_only_json_that_could_spell_a_channel_id_may_hold_a_ref() -> None:
    """A ref needs the key ``channel_id``, spelled out or with a ``\\u`` escape (protocol.md §9)."""
    assert may_hold_channel_ref(b'{"a":{"channel_id":"c","access_key":"k","direction":"read"}}')
    assert may_hold_channel_ref(b'{"\\u0063hannel_id":"c"}')
    assert not may_hold_channel_ref(b'{"channel":"id","title":"channel_id is a word"}')
    assert not may_hold_channel_ref(b"")
