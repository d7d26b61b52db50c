"""The study TOML's ``[gaze]`` table (all keys optional), validated into :class:`GazeSettings`.

See docs/gaze.md ("In the site") and docs/STUDY_SITE.md for what each key does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ConfigError, StudyConfig, _Reader

#: ``[consent]`` flag a study sets to say its consent text covers keeping camera pictures
CONSENT_FRAMES_KEY = "camera_images"

#: frames in one HTTP batch (the page sends at most this many per ``batch_ms``) and in one
#: calibration or validation round; the most bytes a round's request may have
MAX_FRAMES_PER_BATCH = 30
MAX_FRAMES_PER_ROUND = 400
MAX_ROUND_BYTES = 32 * 1024 * 1024
#: bytes of one JPEG frame (HTTP part or WebSocket message)
MAX_FRAME_BYTES = 200 * 1024
#: bytes per pixel of a webcam JPEG at the page's quality (0.8), with room: ~0.15 measured
JPEG_BYTES_PER_PIXEL = 0.25


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

    @property
    def round_frames(self) -> int:
        """Frames the page sends for the larger round: ``settle_ms`` (+ 50 ms) of frames per target."""
        per_target = -(-self.fps * (self.settle_ms + 50) // 1000)
        return max(self.calibration_points, self.validation_points) * per_target

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
    settings = GazeSettings(
        fps=r.int("fps", 10, lo=1, hi=30), width=r.int("width", 320, lo=80, hi=1280),
        height=r.int("height", 240, lo=60, hi=960), batch_ms=r.int("batch_ms", 500, lo=100, hi=5000),
        calibration_points=points, validation_points=r.int("validation_points", 4, lo=1, hi=4),
        settle_ms=r.int("settle_ms", 600, lo=100, hi=3000), pass_accuracy_px=num("pass_accuracy_px", 200.0),
        roi_radius_px=num("roi_radius_px", 100.0), attempts=r.int("attempts", 2, lo=1, hi=5),
        idle_s=num("idle_s", 300.0), face_check_ms=r.int("face_check_ms", 1000, lo=0, hi=60_000),
        drift_correction=r.flag("drift_correction", False), keep_frames=keep_frames,
        recalibrate_every=r.int("recalibrate_every", 0, lo=0),
    )
    _check_request_sizes(settings, f"study {cfg.slug!r}")
    return settings


def _check_request_sizes(s: GazeSettings, where: str) -> None:
    """Settings whose requests the server would refuse fail here, at start, instead of in every
    participant's calibration round."""
    per_batch = -(-s.fps * s.batch_ms // 1000)
    if per_batch > MAX_FRAMES_PER_BATCH:
        raise ConfigError(f"{where}: gaze.fps x gaze.batch_ms gives {per_batch} frames per batch (at most "
                          f"{MAX_FRAMES_PER_BATCH}): lower fps or batch_ms")
    frames = s.round_frames
    size = frames * s.width * s.height * JPEG_BYTES_PER_PIXEL
    if frames > MAX_FRAMES_PER_ROUND or size > MAX_ROUND_BYTES:
        raise ConfigError(
            f"{where}: a calibration round would send {frames} frames of {s.width}x{s.height} (about "
            f"{size / 2**20:.0f} MiB; at most {MAX_FRAMES_PER_ROUND} frames and {MAX_ROUND_BYTES // 2**20} MiB): "
            f"lower gaze.fps, gaze.settle_ms, gaze.calibration_points or the frame size")


def validation_targets(n: int, width: float, height: float) -> list[tuple[float, float]]:
    """Validation points apart from every calibration grid (5/9/13 use 0.1, 0.3, 0.5, 0.7, 0.9)."""
    pts = [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)][:n]
    return [(fx * width, fy * height) for fx, fy in pts]
