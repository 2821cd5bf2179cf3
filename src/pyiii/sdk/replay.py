"""What a worker sends on every (re)connect (spec/protocol.md §10.5 rules 2-4). Pure functions.

Order: ``reattach`` (when a previous connection had a ``worker_id``), ``engine::workers::register``
(Void), trigger types, functions, triggers, then the frames queued while disconnected. Registering
the worker first fixes its namespace before the engine has to buffer anything (§6.4 rule 2).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from typing import Any

from pyiii._version import __version__
from pyiii.protocol.messages import (
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    WorkerMessage,
)
from pyiii.sdk.types import InitOptions

__all__ = ["REGISTER_WORKER", "VOID", "call_namespace", "replay_messages", "worker_register_payload"]

REGISTER_WORKER = "engine::workers::register"
#: The wire form of ``TriggerAction.Void()``.
VOID: dict[str, Any] = {"type": "void"}
DEFAULT_NS = "default"
FEATURES = ("large-messages.v1",)


def call_namespace(function_id: str, explicit: str | None, worker_namespace: str | None) -> str | None:
    """Namespace stamped on a call (§10.5 rule 4); ``None`` means the field is omitted."""
    if explicit is not None:
        return explicit
    if function_id.startswith(("engine::", "configuration::")):
        return DEFAULT_NS
    return worker_namespace


def worker_register_payload(options: InitOptions, name: str, namespace: str | None) -> dict[str, Any]:
    """The ``engine::workers::register`` input (§10.5 rule 3)."""
    telemetry = options.telemetry
    language = telemetry.language if telemetry and telemetry.language else _locale_language()
    payload: dict[str, Any] = {
        "runtime": "python",
        "version": __version__,
        "name": name,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "pid": os.getpid(),
        "isolation": os.environ.get("III_ISOLATION") or None,
        "namespace": namespace,
        "telemetry": {
            "language": language,
            "project_name": telemetry.project_name if telemetry else None,
            "framework": (telemetry.framework if telemetry and telemetry.framework else None) or "pyiii",
        },
        "features": list(FEATURES),
    }
    if options.worker_description is not None:
        payload["description"] = options.worker_description
    return payload


def _locale_language() -> str | None:
    value = os.environ.get("LC_ALL") or os.environ.get("LANG")
    return value.split(".", 1)[0] if value else None


def replay_messages(
    *,
    previous_worker_id: str | None,
    reattach_token: str | None,
    register_payload: dict[str, Any],
    trigger_types: Iterable[RegisterTriggerType],
    functions: Iterable[RegisterFunction],
    triggers: Iterable[RegisterTrigger],
    queued: Iterable[WorkerMessage] = (),
) -> list[WorkerMessage]:
    """Every message to send on a fresh connection, in order (§10.5 rule 2)."""
    out: list[WorkerMessage] = []
    if previous_worker_id:
        reattach = Reattach(previous_worker_id=previous_worker_id)
        if reattach_token:
            reattach.reattach_token = reattach_token
        out.append(reattach)
    out.append(
        InvokeFunction(
            function_id=REGISTER_WORKER, data=register_payload, action=dict(VOID), namespace=DEFAULT_NS
        )
    )
    out.extend(trigger_types)
    out.extend(functions)
    out.extend(triggers)
    out.extend(queued)
    return out
