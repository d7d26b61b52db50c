"""Webcam-like frames of a real face for tests and benchmarks: the astronaut photo shipped with
scikit-image (``skimage.data.astronaut()``; scikit-image is in the ``test`` extra), pasted on a
grey background, scaled and moved, and (:func:`look`) with its eyes turned to a point on a
screen. Nothing here is used by the pipeline itself."""
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


#: MediaPipe face-mesh eye-opening contours (image-left corner first)
EYE_CONTOURS = (
    ((33, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)),
    ((362, 263), (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)),
)
#: the simulated camera and screen of :func:`look` (the pipeline is told none of it): focal length
#: (px, for a 640 px wide picture: a ~65 deg webcam), CSS px per cm, the camera's height above the
#: viewport's top edge (cm, centred), the viewport's centre (CSS px), the outer eye corners' span
#: (cm), the iris's distance from the eye's centre of rotation (eye widths: ~1.2 cm for ~3 cm)
FOCAL_PX, PX_PER_CM, CAMERA_ABOVE_CM, VIEWPORT_CENTRE = 500.0, 45.0, 1.0, (775.0, 475.0)
EYE_SPAN_CM, IRIS_EYE_WIDTHS = 9.0, 0.4


def screen_cm(gaze: tuple[float, float]) -> tuple[float, float]:
    """A viewport point (CSS px) in camera axes (cm; x image right, y down, in the camera's plane)."""
    return -(gaze[0] - VIEWPORT_CENTRE[0]) / PX_PER_CM, CAMERA_ABOVE_CM + gaze[1] / PX_PER_CM


def look(image: np.ndarray, pts: np.ndarray, gaze: tuple[float, float]) -> np.ndarray:
    """``image`` with the contents of both eye openings (iris and sclera, inside the eye-contour
    landmarks ``pts`` of the face as it is) moved as an eye turning to look at ``gaze`` (viewport
    CSS px) would move its iris, seen from where the picture puts the eye: its distance from the
    eye span (``EYE_SPAN_CM`` at ``FOCAL_PX``), its side and height from its place in the picture.

    The photo is frontal with its eyes on its camera, so wherever it is placed it shows a head
    turned to face the camera, looking into it: the eye turns by the angle between the camera's
    direction and the target's, seen from the eye. (Measuring the turn from the camera's axis
    instead, as if the head faced the screen while the picture shows it facing the camera,
    made a face placed to one side read most of its sideways distance as gaze in the sight
    point: one calibrated session predicted another with an offset growing by ~2,600 px per
    picture width between their faces' places, in a synthetic manifest of this kind.)
    Such a head keeps nearly the same eye turn for a target wherever it is (7 cm to the side at
    56 cm: 10.2 against 10.1 deg), unlike a head that faces the screen
    (:mod:`.synthetic_gaze` has those). Lids and head do not follow the gaze."""
    import cv2

    out = image.copy()
    h, w_img = image.shape[:2]
    depth = FOCAL_PX * EYE_SPAN_CM / float(np.linalg.norm(pts[263] - pts[33]))
    tx, ty = screen_cm(gaze)
    for (a, b), contour in EYE_CONTOURS:
        w = float(np.linalg.norm(pts[b] - pts[a]))
        ex, ey = ((pts[a] + pts[b]) / 2 - (w_img / 2, h / 2)) * depth / FOCAL_PX
        # the photo's eyes look into its camera, and its face, pasted anywhere, faces the camera
        # (a head turned towards it): the eye turns from the camera's direction to the target's
        fu = IRIS_EYE_WIDTHS * np.sin(np.arctan2(tx - ex, depth) - np.arctan2(-ex, depth))
        fv = IRIS_EYE_WIDTHS * np.sin(np.arctan2(ty - ey, depth) - np.arctan2(-ey, depth))
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(pts[list(contour)]).astype(np.int32)], 255)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        shift = np.float32([[1, 0, fu * w], [0, 1, fv * w]])
        moved = cv2.warpAffine(image, shift, image.shape[1::-1], flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        out[mask > 0] = moved[mask > 0]
    return out
