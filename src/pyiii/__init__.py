"""pyiii: the iii engine rebuilt in Python, and its worker SDK (spec/protocol.md §10).

Porting a worker from the official SDK means changing ``from iii import ...`` to
``from pyiii import ...``.
"""

from pyiii._version import __version__
from pyiii.protocol.errors import InvocationError
from pyiii.sdk.client import III, register_worker
from pyiii.sdk.logger import Logger
from pyiii.sdk.types import (
    EngineFunctions,
    EngineTriggers,
    FunctionRef,
    InitOptions,
    ReconnectionConfig,
    TelemetryOptions,
    Trigger,
    TriggerAction,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
    TriggerTypeRef,
)

__all__ = [
    "III",
    "EngineFunctions",
    "EngineTriggers",
    "FunctionRef",
    "InitOptions",
    "InvocationError",
    "Logger",
    "ReconnectionConfig",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeRef",
    "__version__",
    "register_worker",
]
