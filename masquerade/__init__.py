"""Masquerade: face anonymization for live camera streams and recorded footage."""

from masquerade.faces import Faces

__all__ = ["Faces", "__version__"]
__version__ = "0.1.0"
