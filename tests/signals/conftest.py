"""Fixtures of tests/signals. Webcam tests: real face frames built from ``skimage.data.astronaut()``."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from gazepref.signals import synthetic_face


@pytest.fixture(scope="session")
def astronaut_face() -> np.ndarray:
    """The head and shoulders of the astronaut photo (BGR, 300 x 250)."""
    pytest.importorskip("skimage.data")
    return synthetic_face.astronaut_face()


@pytest.fixture(scope="session")
def face_frame(astronaut_face) -> Callable[..., np.ndarray]:
    """``face_frame(scale, dx, dy, size=(w, h), brightness=1.0, mirror=False)``: the face pasted on
    a grey background, ``scale`` x 200 px tall, centred then moved by (dx, dy) px."""
    return synthetic_face.face_frame


def moving_face_frames(face_frame, n: int = 45) -> list[np.ndarray]:
    """A face that drifts sideways, bobs and scales between 0.8x and 1.1x over ``n`` frames."""
    frames = []
    for i in range(n):
        phase = 2 * np.pi * i / n
        frames.append(face_frame(scale=0.95 + 0.15 * np.sin(phase), dx=30 * np.sin(phase), dy=8 * np.cos(2 * phase)))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG video"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, face_frame) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "face.avi", moving_face_frames(face_frame))


@pytest.fixture(scope="session")
def to_jpeg() -> Callable[..., bytes]:
    def encode(image: np.ndarray, quality: int = 85) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return buf.tobytes()

    return encode
