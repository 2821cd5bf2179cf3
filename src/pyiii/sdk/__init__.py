"""The pyiii worker SDK: ``register_worker``, ``III``, ``Logger`` and their value types (spec §10).

Layout: :mod:`~pyiii.sdk.client` (the transport-agnostic client), :mod:`~pyiii.sdk.transport`
(the seam), :mod:`~pyiii.sdk.remote` (WebSocket with reconnect), :mod:`~pyiii.sdk.inprocess`
(an engine in this process), :mod:`~pyiii.sdk.replay` (what a (re)connect sends),
:mod:`~pyiii.sdk.backoff` (reconnect delays), :mod:`~pyiii.sdk.handlers` (handler adaptation),
:mod:`~pyiii.sdk.logger`, :mod:`~pyiii.sdk.channels` and :mod:`~pyiii.sdk.types`.
"""

from pyiii.sdk.channels import (
    Channel,
    ChannelReader,
    ChannelWriter,
    StreamChannelRef,
    create_channel,
    create_channel_async,
)
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
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
    TriggerTypeRef,
)

__all__ = [
    "III",
    "Channel",
    "ChannelReader",
    "ChannelWriter",
    "EngineFunctions",
    "EngineTriggers",
    "FunctionRef",
    "InitOptions",
    "Logger",
    "ReconnectionConfig",
    "StreamChannelRef",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeRef",
    "create_channel",
    "create_channel_async",
    "register_worker",
]
