"""Settings of the observability module (config-cli-modules.md §7.1)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ObservabilitySettings:
    """The §7.1 keys the module uses, with the spec's defaults; field names are the config key names.

    ``level``, ``format`` and ``service_name`` describe the engine's own log lines; of them the module
    only reads ``format`` (for the console lines of stored records, §7.3). Accepted-and-ignored keys
    (exporters, metrics, alerts) are the config loader's business and have no field here.
    """

    enabled: bool = True
    service_name: str = "iii"
    level: str = "info"  # trace | debug | info | warn | error
    format: str = "default"  # default | json
    logs_enabled: bool = True
    logs_max_count: int = 1000
    logs_retention_seconds: float = 3600
    logs_console_output: bool = True
    logs_sampling_ratio: float = 1.0
