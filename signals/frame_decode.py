"""Checked decoding of webcam frames (JPEG bytes) with OpenCV.

The image size is read from the JPEG header *before* decoding, so an oversized frame is refused
without allocating it. Every refusal is a :class:`FrameError` (a ``ValueError``) with a one-line
reason the site can return as a 400.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Largest accepted frame (pixels per side) and payload; the site sends 320x240 by default.
MAX_SIDE = 1920
MAX_BYTES = 4 * 1024 * 1024

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class FrameError(ValueError):
    """A frame that cannot be used: not JPEG, corrupt, empty or too large."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header; raises FrameError when not found."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise FrameError("not a JPEG image (missing the FFD8 start marker)")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise FrameError("corrupt JPEG: bad marker structure")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            raise FrameError("corrupt JPEG: bad segment length")
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        i += 2 + length
    raise FrameError("corrupt JPEG: no frame header")


def decode_jpeg(data: bytes | bytearray | memoryview, max_side: int = MAX_SIDE, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Decode JPEG bytes to a BGR ``uint8`` image (H x W x 3).

    Raises ``TypeError`` for a non-bytes argument and :class:`FrameError` for an empty, non-JPEG,
    corrupt or oversized frame.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a frame must be JPEG bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise FrameError("empty frame")
    if len(data) > max_bytes:
        raise FrameError(f"frame of {len(data)} bytes is larger than the limit of {max_bytes}")
    width, height = jpeg_size(data)
    if width == 0 or height == 0:
        raise FrameError("corrupt JPEG: zero image size")
    if max(width, height) > max_side:
        raise FrameError(f"frame of {width}x{height} px is larger than the limit of {max_side} px per side")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError("corrupt JPEG: OpenCV could not decode it")
    return image
