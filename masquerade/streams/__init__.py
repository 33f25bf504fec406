"""Video sources (yield frames) and sinks (take frames)."""

from masquerade.streams.frames import Frame, StreamInfo
from masquerade.streams.pyav import AudioPacket, PyAVFileSink, PyAVSource, probe

__all__ = ["AudioPacket", "Frame", "PyAVFileSink", "PyAVSource", "StreamInfo", "probe"]
