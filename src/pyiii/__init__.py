"""pyiii: the iii engine rebuilt in Python."""
from pyiii._version import __version__

__all__ = ["__version__"]
