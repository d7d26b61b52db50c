"""Webcam-like frames of a real face for tests and benchmarks: the astronaut photo shipped with
scikit-image (``skimage.data.astronaut()``; scikit-image is in the ``test`` extra), pasted on a
grey background, scaled and moved. Nothing here is used by the pipeline itself."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def astronaut_face() -> np.ndarray:
    """The head and shoulders of the astronaut photo (BGR, 300 x 250)."""
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:350])


def face_frame(scale: float = 1.0, dx: float = 0, dy: float = 0, size: tuple[int, int] = (320, 240),
               brightness: float = 1.0, mirror: bool = False) -> np.ndarray:
    """The face on a grey background, ``scale`` x 200 px tall (at 240 px frame height), centred
    then moved by (dx, dy) px; parts outside the frame are cut off."""
    import cv2

    w, h = size
    face = astronaut_face()[:, ::-1] if mirror else astronaut_face()
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


def head_and_shoulders(size: tuple[int, int] = (640, 480), brightness: float = 1.0) -> np.ndarray:
    """The whole astronaut photo (head, shoulders, background) filling the frame's height on a
    4:3 canvas: a normal laptop framing, the eye span ~9 % of the frame width."""
    import cv2
    from skimage import data

    w, h = size
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (h, h), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 60, np.uint8)
    x0 = (w - h) // 2
    canvas[:, x0:x0 + h] = photo
    if brightness != 1.0:
        canvas = np.clip(canvas.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
    return canvas


def moving_face(i: int, n: int = 40, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """Frame ``i`` of an ``n``-frame loop in which the face drifts sideways and zooms."""
    phase = 2 * np.pi * i / n
    return face_frame(scale=0.95 + 0.12 * np.sin(phase), dx=25 * np.sin(phase), dy=8 * np.cos(2 * phase), size=size)


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the frame as JPEG")
    return buf.tobytes()
