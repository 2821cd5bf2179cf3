"""The built-in state module: a global key-value store with reactive change triggers (spec/state.md).

Layout: :mod:`.module` (the ``state::*`` functions), :mod:`.requests` (input decoding, §3.2),
:mod:`.ops` (the pure update-op interpreter, §6), :mod:`.triggers` (the ``state`` trigger type, §7),
:mod:`.paging` (``list_entries`` cursors, §5.7), :mod:`.values` (canonical JSON), :mod:`.errors`,
and :mod:`.adapters` (memory, SQLite, Redis behind one contract, §8).
"""
