"""Fixtures of tests/signals. Webcam tests: real face frames built from ``skimage.data.astronaut()``."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut_face() -> np.ndarray:
    """The head and shoulders of the astronaut photo (BGR, 300 x 250)."""
    data = pytest.importorskip("skimage.data")
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image[0:300, 100:350])


@pytest.fixture(scope="session")
def face_frame(astronaut_face) -> Callable[..., np.ndarray]:
    """``face_frame(scale, dx, dy, size=(w, h), brightness=1.0)``: the face pasted on a grey
    background, ``scale`` x 200 px tall, centred then moved by (dx, dy) px."""

    def make(scale: float = 1.0, dx: float = 0, dy: float = 0, size: tuple[int, int] = (320, 240),
             brightness: float = 1.0, mirror: bool = False) -> np.ndarray:
        w, h = size
        face = astronaut_face[:, ::-1] if mirror else astronaut_face
        fh = int(round(200 * scale * h / 240))
        fw = int(round(fh * face.shape[1] / face.shape[0]))
        face = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_AREA)
        canvas = np.full((h, w, 3), 96, np.uint8)
        x0, y0 = int(round(w / 2 - fw / 2 + dx)), int(round(h / 2 - fh / 2 + dy))
        xs, ys, xe, ye = max(0, x0), max(0, y0), min(w, x0 + fw), min(h, y0 + fh)
        canvas[ys:ye, xs:xe] = face[ys - y0:ye - y0, xs - x0:xe - x0]
        if brightness != 1.0:
            canvas = np.clip(canvas.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
        return canvas

    return make


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
