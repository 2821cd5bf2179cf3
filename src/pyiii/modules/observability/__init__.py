"""The ``iii-observability`` module: log store, ``engine::log::*``, ``engine::logs::*``, ``log`` triggers.

Wiring::

    from pyiii.modules.observability import ObservabilityModule, ObservabilitySettings
    engine.add_module(ObservabilityModule(ObservabilitySettings(logs_max_count=500)))
"""

from .console import format_console_line
from .module import LOG_TRIGGER_TYPE, ObservabilityModule
from .settings import ObservabilitySettings
from .store import LogQuery, LogStore

__all__ = [
    "LOG_TRIGGER_TYPE",
    "LogQuery",
    "LogStore",
    "ObservabilityModule",
    "ObservabilitySettings",
    "format_console_line",
]
