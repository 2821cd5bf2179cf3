"""Exceptions a worker catches: ``from pyiii.errors import InvocationError`` (spec §10.1)."""

from pyiii.protocol.errors import InvocationError, RegistrationRejectedError

__all__ = ["InvocationError", "RegistrationRejectedError"]
