"""Hostile payloads written byte by byte (OpenEXR file layout), for tests of what a receiver
allocates before it looks."""

from __future__ import annotations

import struct


def _attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def exr_with_channels(channels: int, width: int, height: int, data_bytes: int = 64) -> bytes:
    """A scanline EXR header declaring ``channels`` FLOAT channels of ``width`` x ``height``,
    uncompressed, followed by only ``data_bytes`` of pixel data: a reader that trusts the header
    allocates channels * width * height * 4 bytes."""
    chlist = b"".join(f"c{i:04d}".encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for i in range(channels))
    head = (b"\x76\x2f\x31\x01" + struct.pack("<I", 2)
            + _attr("channels", "chlist", chlist + b"\0")
            + _attr("compression", "compression", b"\0")
            + _attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1))
            + _attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, width - 1, height - 1))
            + _attr("lineOrder", "lineOrder", b"\0")
            + _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
            + _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0))
            + _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0")
    table_end = len(head) + 8 * height
    offsets = struct.pack(f"<{height}Q", *[table_end] * height)
    return head + offsets + struct.pack("<ii", 0, data_bytes) + b"\0" * data_bytes
