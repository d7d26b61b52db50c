"""The study TOML's ``[gaze]`` table (all keys optional), validated into :class:`GazeSettings`.

See docs/gaze.md ("In the site") and docs/STUDY_SITE.md for what each key does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ConfigError, StudyConfig, _Reader

#: ``[consent]`` flag a study sets to say its consent text covers keeping camera pictures
CONSENT_FRAMES_KEY = "camera_images"


@dataclass(frozen=True)
class GazeSettings:
    fps: int = 10
    width: int = 320
    height: int = 240
    batch_ms: int = 500
    calibration_points: int = 9
    validation_points: int = 4
    settle_ms: int = 600  # frames of the last settle_ms before a target's click are used
    pass_accuracy_px: float = 200.0
    roi_radius_px: float = 100.0
    attempts: int = 2  # calibration + validation rounds before going on regardless
    idle_s: float = 300.0  # a tracker unused this long is closed
    face_check_ms: int = 1000  # faces in view are counted this often (stream time)
    drift_correction: bool = False  # clicks during tasks correct a slow gaze offset
    keep_frames: bool = False  # store the JPEG frames (needs consent.camera_images = true)
    recalibrate_every: int = 0  # tasks between recalibration steps (0: calibrate once)

    @property
    def max_side(self) -> int:
        return 2 * max(self.width, self.height)

    def page(self) -> dict[str, Any]:
        return {"fps": self.fps, "width": self.width, "height": self.height, "batch_ms": self.batch_ms,
                "calibration_points": self.calibration_points, "validation_points": self.validation_points,
                "settle_ms": self.settle_ms, "pass_accuracy_px": self.pass_accuracy_px,
                "attempts": self.attempts, "keep_frames": self.keep_frames}


def gaze_settings(cfg: StudyConfig) -> GazeSettings:
    """The ``[gaze]`` table of the study config (all keys optional)."""
    r = _Reader(cfg.raw.get("gaze", {}), "gaze", f"study {cfg.slug!r}")
    known = set(GazeSettings.__dataclass_fields__)
    unknown = sorted(set(r.data) - known)
    if unknown:
        raise ConfigError(f"study {cfg.slug!r}: unknown key gaze.{unknown[0]} (known: {', '.join(sorted(known))})")
    points = r.int("calibration_points", 9)
    if points not in (5, 9, 13):
        r._fail("calibration_points", "5, 9 or 13")
    num = lambda k, d: float(r.get(k, (int, float), d, "a number"))  # noqa: E731
    keep_frames = r.flag("keep_frames", False)
    if keep_frames and cfg.raw.get("consent", {}).get(CONSENT_FRAMES_KEY) is not True:
        raise ConfigError(
            f"study {cfg.slug!r}: gaze.keep_frames = true stores the participants' camera pictures; say so in "
            f"the [consent] text and set consent.{CONSENT_FRAMES_KEY} = true")
    return GazeSettings(
        fps=r.int("fps", 10, lo=1, hi=30), width=r.int("width", 320, lo=80, hi=1280),
        height=r.int("height", 240, lo=60, hi=960), batch_ms=r.int("batch_ms", 500, lo=100, hi=5000),
        calibration_points=points, validation_points=r.int("validation_points", 4, lo=1, hi=4),
        settle_ms=r.int("settle_ms", 600, lo=100, hi=3000), pass_accuracy_px=num("pass_accuracy_px", 200.0),
        roi_radius_px=num("roi_radius_px", 100.0), attempts=r.int("attempts", 2, lo=1, hi=5),
        idle_s=num("idle_s", 300.0), face_check_ms=r.int("face_check_ms", 1000, lo=0, hi=60_000),
        drift_correction=r.flag("drift_correction", False), keep_frames=keep_frames,
        recalibrate_every=r.int("recalibrate_every", 0, lo=0),
    )


def validation_targets(n: int, width: float, height: float) -> list[tuple[float, float]]:
    """Validation points apart from every calibration grid (5/9/13 use 0.1, 0.3, 0.5, 0.7, 0.9)."""
    pts = [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)][:n]
    return [(fx * width, fy * height) for fx, fy in pts]
