"""The built-in stream module: realtime JSON streams pushed to WebSocket clients (spec/stream.md).

See :mod:`.module` for the layout of the package.
"""

from .module import MODULE_NAME, StreamModule

__all__ = ["MODULE_NAME", "StreamModule"]
