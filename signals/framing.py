"""Whether a webcam picture frames the participant well enough for gaze, and what to tell them.

The camera set-up (the study site's face indicator) checks the tracker row of the latest frame
(:meth:`gazepref.signals.webcam.GazeTracker.process_image`): one face, lit, at a usable distance,
near the middle. :func:`framing_advice` returns a code and a message for the participant.

Distance bounds: the tracker measures ``face_size`` = distance between the outer eye corners
(Face Mesh landmarks 33 and 263) / image width. Assumed geometry (:data:`GEOMETRY`):

* interpupillary distance 6.3 cm (adult mean); the outer eye corners lie about 1.4 x that apart
  (anthropometric ex-ex width ~8.6-9.2 cm), so the measured span is ~8.8 cm;
* laptop and USB webcams have a horizontal field of view of 55-75 degrees (the frame is
  ``2 d tan(FOV / 2)`` wide at distance ``d``);
* a participant sits 40-90 cm from the screen (and its camera).

So the span is ``8.8 / (2 d tan(FOV / 2))`` of the frame width: at least 0.064 (90 cm, 75 degrees)
and at most 0.21 (40 cm, 55 degrees). :func:`face_size_bounds` derives these; a span outside them
is too far / too near *for every camera in that range*. A head-and-shoulders laptop framing (the
eye span ~9 % of the width: ~78 cm with a 65-degree camera) passes; the former fixed bound, 12 %,
asked for ~58 cm with a 65-degree camera and failed a normal sitting distance.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..schema import GazeFlag

__all__ = ["GEOMETRY", "FramingGeometry", "face_size_bounds", "framing_advice", "span_fraction"]


@dataclass(frozen=True)
class FramingGeometry:
    """What the distance bounds assume (see the module text)."""

    ipd_cm: float = 6.3  # interpupillary distance
    outer_corner_per_ipd: float = 1.4  # outer-eye-corner span / IPD
    fov_deg: tuple[float, float] = (55.0, 75.0)  # horizontal field of view of webcams
    distance_cm: tuple[float, float] = (40.0, 90.0)  # viewing distance accepted

    @property
    def span_cm(self) -> float:
        return self.ipd_cm * self.outer_corner_per_ipd


GEOMETRY = FramingGeometry()


def span_fraction(distance_cm: float, fov_deg: float, span_cm: float = GEOMETRY.span_cm) -> float:
    """The eye-corner span as a fraction of the frame width at ``distance_cm`` with a camera of
    horizontal field of view ``fov_deg``."""
    return span_cm / (2 * distance_cm * math.tan(math.radians(fov_deg) / 2))


def face_size_bounds(geometry: FramingGeometry = GEOMETRY) -> tuple[float, float]:
    """(smallest, largest) ``face_size`` of a participant within the distance range with any
    camera in the field-of-view range, rounded to 3 decimals (0.064, 0.212 by default)."""
    (near, far), (narrow, wide) = geometry.distance_cm, geometry.fov_deg
    lo = span_fraction(far, wide, geometry.span_cm)
    hi = span_fraction(near, narrow, geometry.span_cm)
    return round(lo, 3), round(hi, 3)


#: where the face centre (fraction of the image) must lie
CENTRE_X = (0.2, 0.8)
CENTRE_Y = (0.15, 0.85)


def framing_advice(row: Mapping[str, float] | None, bounds: tuple[float, float] | None = None
                   ) -> tuple[str, str]:
    """``(code, message)`` for the participant about the frame whose tracker row is ``row``.

    Codes: ``"ok"``, ``"no-frame"``, ``"dark"`` (the picture is (nearly) black: covered lens,
    camera off, a dark room), ``"bright"`` (the face largely saturated), ``"no-face"``,
    ``"several"``, ``"far"``, ``"near"``, ``"left"`` /
    ``"right"`` / ``"up"`` / ``"down"`` (move that way, as seen in the mirrored preview). The
    image is the camera's (not mirrored): a face in its left part sits to the participant's right.
    """
    if row is None:
        return "no-frame", "Waiting for the camera picture…"
    flags = int(row.get("flags", 0))
    lo, hi = bounds if bounds is not None else face_size_bounds()
    if flags & GazeFlag.NO_FACE:
        if flags & GazeFlag.TOO_DARK:
            return "dark", ("The camera picture is dark. Is the camera covered, or the room dark? "
                            "Uncover the camera and turn on a light in front of you.")
        return "no-face", "No face found: sit in front of the camera and look at the screen."
    if flags & GazeFlag.MULTIPLE_FACES:
        return "several", "Several faces are in view: make sure only you are in the picture."
    if flags & GazeFlag.TOO_DARK:
        return "dark", "Your face is too dark: turn on a light in front of you (not behind you)."
    if flags & GazeFlag.OVEREXPOSED:
        return "bright", ("Your face is too bright: dim or move the light shining on it, "
                          "or move out of direct sunlight.")
    size, fx, fy = row.get("face_size", math.nan), row.get("face_x", math.nan), row.get("face_y", math.nan)
    if math.isfinite(size) and size < lo:
        return "far", "You are too far from the camera: move closer (about an arm's length from the screen)."
    if math.isfinite(size) and size > hi:
        return "near", "You are too close to the camera: move back a little (about an arm's length)."
    if math.isfinite(fx) and fx < CENTRE_X[0]:
        return "left", "Move a little to your left, so your face is in the middle of the picture."
    if math.isfinite(fx) and fx > CENTRE_X[1]:
        return "right", "Move a little to your right, so your face is in the middle of the picture."
    if math.isfinite(fy) and fy < CENTRE_Y[0]:
        return "up", "Your face is at the top of the picture: tilt the screen back a little or sit lower."
    if math.isfinite(fy) and fy > CENTRE_Y[1]:
        return "down", "Your face is at the bottom of the picture: tilt the screen forward a little or sit up."
    return "ok", "Face well placed."
