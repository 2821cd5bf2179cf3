"""The built-in HTTP module: REST routes whose handlers are worker functions (spec/http.md).

Layout: :mod:`.module` (the ``http`` trigger type and the listener), :mod:`.server` (the request
pipeline as layers, §3), :mod:`.routing` (path templates and per-method segment tries, pure),
:mod:`.request` (the request object, pure), :mod:`.response` (envelopes, errors, streaming control,
pure) and :mod:`.cors` (pure).
"""

from .module import MODULE_NAME, HttpModule

__all__ = ["MODULE_NAME", "HttpModule"]
