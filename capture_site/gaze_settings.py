"""The study TOML's ``[gaze]`` table (all keys optional), validated into :class:`GazeSettings`.

See docs/gaze.md ("In the site") and docs/STUDY_SITE.md for what each key does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import CONSENT_FRAMES_KEY, ConfigError, StudyConfig, _Reader

#: frames in one HTTP batch (the page sends at most this many per ``batch_ms``) and in one
#: calibration or validation round; the most bytes a round's request may have
MAX_FRAMES_PER_BATCH = 30
MAX_FRAMES_PER_ROUND = 400
MAX_ROUND_BYTES = 32 * 1024 * 1024
#: bytes of one JPEG frame (HTTP part or WebSocket message)
MAX_FRAME_BYTES = 200 * 1024
#: bytes per pixel of a webcam JPEG at the page's quality (0.8), with room: ~0.15 measured
JPEG_BYTES_PER_PIXEL = 0.25


#: what happens when no calibration attempt passes validation (``calibration_fallback``):
#: ``mouse-only``: the session goes on without the webcam (no gaze rows, like no camera);
#: ``record-uncalibrated``: the tasks keep recording the webcam's features, gaze x/y NaN with the
#: UNCALIBRATED and CALIBRATION_FAILED flags and confidence 0 (``gaze recalibrate`` can estimate
#: it later); ``screen-out``: the participant cannot go on and is asked to return the study.
FALLBACKS = ("mouse-only", "record-uncalibrated", "screen-out")

#: where the face landmarks are computed (``compute``): ``browser``: in the participant's page
#: (capture_site/static/facemesh.js), which sends landmark samples, never pictures; ``server``:
#: the page sends camera pictures and the server runs Face Mesh (needed to keep the pictures)
COMPUTE = ("browser", "server")
#: TF.js backends of the page's face mesh (``mesh_backend``; see docs/gaze.md for the measurements)
MESH_BACKENDS = ("webgl", "wasm", "cpu")
#: samples (pictures' landmarks) in one HTTP request of the page
MAX_SAMPLES_PER_BATCH = 60


@dataclass(frozen=True)
class GazeSettings:
    fps: int = 10
    width: int = 320
    height: int = 240
    batch_ms: int = 500
    task_batch_ms: int = 1000  # browser mode: the task phase posts its landmark samples this often (set-up: batch_ms)
    task_batch_max_ms: int = 4000  # ... and at most this seldom while the server is short of CPU (gaze_pacing.py)
    calibration_points: int = 9
    validation_points: int = 4
    settle_ms: int = 600  # frames of the last settle_ms before a target's click are used
    pass_accuracy_px: float = 200.0
    roi_radius_px: float = 100.0
    attempts: int = 2  # calibration + validation rounds before going on regardless
    idle_s: float = 300.0  # a tracker unused this long is closed
    face_check_ms: int = 1000  # faces in view are counted this often (stream time)
    drift_correction: bool = False  # clicks during tasks correct a slow gaze offset
    interaction_calibration: bool = True  # clicks during tasks refit an affine correction (recency/quality weighted);
    #                                       the default unless drift_correction asks for the offset alone
    keep_frames: bool = False  # store the JPEG frames (needs consent.camera_images = true)
    recalibrate_every: int = 0  # tasks between recalibration steps (0: calibrate once)
    min_frames: int = 5  # usable frames (face found, eyes open) a target needs before it goes
    target_timeout_ms: int = 6000  # a target without enough usable frames this long: the round is frame-starved
    calibration_fallback: str = "mouse-only"  # when no attempt passes: see FALLBACKS
    setup_timeout_s: float = 60.0  # set-up not passed this long: the page offers a way on (0: never)
    viewing_distance_cm: float = 60.0  # assumed for accuracy in degrees (with CSS_PX_PER_CM)
    compute: str = "browser"  # where the landmarks are computed: see COMPUTE
    mesh_backend: str = "wasm"  # the page's TF.js backend (compute = "browser"): see MESH_BACKENDS
    mesh_worker: bool = True  # the page's face mesh in a Web Worker (false: on the page's main thread)

    @property
    def click_correction(self) -> bool:
        """Whether task clicks correct the gaze (an offset, or continuous calibration)."""
        return self.drift_correction or self.interaction_calibration

    @property
    def max_side(self) -> int:
        return 2 * max(self.width, self.height)

    @property
    def target_frames(self) -> int:
        """The most frames the page sends for one target: ``settle_ms`` (+ 50 ms) of frames, or
        twice ``min_frames`` when the page had to wait longer for usable ones."""
        return max(-(-self.fps * (self.settle_ms + 50) // 1000), 2 * self.min_frames)

    @property
    def target_seen_max(self) -> int:
        """The most frames the page can record while one target is shown (``settle_ms`` before the
        click, then up to three ``target_timeout_ms`` of waiting, the longest a slow computer's
        page waits, calibration.js ``targetWaitMs``, and a second's slack): the bound of a round's
        ``seen`` counts."""
        return -(-self.fps * (self.settle_ms + 3 * self.target_timeout_ms + 1000) // 1000)

    @property
    def round_frames(self) -> int:
        """Frames the page sends at most for the larger round."""
        return max(self.calibration_points, self.validation_points) * self.target_frames

    def page(self) -> dict[str, Any]:
        return {"fps": self.fps, "width": self.width, "height": self.height, "batch_ms": self.batch_ms,
                "task_batch_ms": self.task_batch_ms, "task_batch_max_ms": self.task_batch_max_ms,
                "calibration_points": self.calibration_points, "validation_points": self.validation_points,
                "settle_ms": self.settle_ms, "pass_accuracy_px": self.pass_accuracy_px,
                "attempts": self.attempts, "keep_frames": self.keep_frames, "min_frames": self.min_frames,
                "target_frames": self.target_frames, "target_timeout_ms": self.target_timeout_ms,
                "calibration_fallback": self.calibration_fallback, "setup_timeout_s": self.setup_timeout_s,
                "compute": self.compute} | (self._browser_page() if self.compute == "browser" else {})

    def _browser_page(self) -> dict[str, Any]:
        from gazepref.signals.eye_features import PATCH_SIZE
        from gazepref.signals.webcam import SAMPLE_LANDMARKS, QualityThresholds

        # too_dark: the grey level below which a picture without a face is a dark one (the task
        # page's warning says so, as the set-up's indicator does from the server's TOO_DARK flag)
        return {"mesh_backend": self.mesh_backend, "mesh_worker": self.mesh_worker, "landmarks": list(SAMPLE_LANDMARKS), "patch_size": list(PATCH_SIZE),
                "too_dark": QualityThresholds().too_dark}


def gaze_settings(cfg: StudyConfig, source: str | None = None, strict: bool = False) -> GazeSettings:
    """The ``[gaze]`` table of the study config (all keys optional); errors name ``source`` (the
    study file; default: the study's slug).

    ``strict`` (a study file being loaded, from :func:`~gazepref.capture_site.config.parse_config`)
    adds that ``pass_accuracy_px``, ``roi_radius_px`` and ``idle_s`` are finite and > 0 and
    ``setup_timeout_s`` finite: NaN, infinities and negative distances or times would pass no
    validation, or never close a tracker or time out. The site reads a stored config without
    them, as it did before they existed."""
    where = source or f"study {cfg.slug!r}"
    r = _Reader(cfg.raw.get("gaze", {}), "gaze", where)
    known = set(GazeSettings.__dataclass_fields__)
    unknown = sorted(set(r.data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key gaze.{unknown[0]} (known: {', '.join(sorted(known))})")
    points = r.int("calibration_points", 9, expected="5, 9 or 13")
    if points not in (5, 9, 13):
        r._fail("calibration_points", "5, 9 or 13")
    positive: dict[str, Any] = {"lo": 0, "lo_open": True} if strict else {"finite": False}
    keep_frames = r.flag("keep_frames", False)
    # the pictures can only be kept where they are sent: keeping them means the server computes
    compute = r.choice("compute", COMPUTE, "server" if keep_frames else "browser")
    if keep_frames and compute == "browser":
        raise ConfigError(f"{where}: gaze.keep_frames = true needs gaze.compute = \"server\" (in the "
                          f"browser mode the camera pictures never leave the participant's computer)")
    if keep_frames and cfg.raw.get("consent", {}).get(CONSENT_FRAMES_KEY) is not True:
        raise ConfigError(
            f"{where}: gaze.keep_frames = true stores the participants' camera pictures; say so in "
            f"the [consent] text and set consent.{CONSENT_FRAMES_KEY} = true")
    fps, task_batch_ms = r.int("fps", 10, lo=1, hi=30), r.int("task_batch_ms", 1000, lo=100, hi=5000)
    drift = r.flag("drift_correction", False)  # true alone: the offset correction instead of the affine one
    settings = GazeSettings(
        fps=fps, width=r.int("width", 320, lo=80, hi=1280),
        height=r.int("height", 240, lo=60, hi=960), batch_ms=r.int("batch_ms", 500, lo=100, hi=5000),
        task_batch_ms=task_batch_ms, task_batch_max_ms=r.int("task_batch_max_ms", max(task_batch_ms, min(
            4000, MAX_SAMPLES_PER_BATCH * 1000 // fps)), lo=100, hi=60_000),
        calibration_points=points, validation_points=r.int("validation_points", 4, lo=1, hi=4),
        settle_ms=r.int("settle_ms", 600, lo=100, hi=3000),
        pass_accuracy_px=r.number("pass_accuracy_px", 200.0, **positive),
        roi_radius_px=r.number("roi_radius_px", 100.0, **positive), attempts=r.int("attempts", 2, lo=1, hi=5),
        idle_s=r.number("idle_s", 300.0, **positive),
        face_check_ms=r.int("face_check_ms", 1000, lo=0, hi=60_000),
        drift_correction=drift, keep_frames=keep_frames,
        interaction_calibration=r.flag("interaction_calibration", not drift),
        recalibrate_every=r.int("recalibrate_every", 0, lo=0),
        min_frames=r.int("min_frames", 5, lo=1, hi=30),
        target_timeout_ms=r.int("target_timeout_ms", 6000, lo=500, hi=60_000),
        calibration_fallback=r.choice("calibration_fallback", FALLBACKS, "mouse-only"),
        setup_timeout_s=r.number("setup_timeout_s", 60.0, lo=0, finite=strict),
        viewing_distance_cm=r.number("viewing_distance_cm", 60.0, lo=20, hi=200,
                                     expected="a distance in cm between 20 and 200"),
        compute=compute, mesh_backend=r.choice("mesh_backend", MESH_BACKENDS, "wasm"),
        mesh_worker=r.flag("mesh_worker", True),
    )
    _check_request_sizes(settings, where)
    return settings


def _check_request_sizes(s: GazeSettings, where: str) -> None:
    """Settings whose requests the server would refuse fail here, at start, instead of in every
    participant's calibration round."""
    per_batch = -(-s.fps * s.batch_ms // 1000)
    if per_batch > MAX_FRAMES_PER_BATCH:
        raise ConfigError(f"{where}: gaze.fps x gaze.batch_ms gives {per_batch} frames per batch (at most "
                          f"{MAX_FRAMES_PER_BATCH}): lower fps or batch_ms")
    for key in ("task_batch_ms", "task_batch_max_ms"):
        per_task_batch = -(-s.fps * getattr(s, key) // 1000)
        if s.compute == "browser" and per_task_batch > MAX_SAMPLES_PER_BATCH:
            raise ConfigError(f"{where}: gaze.fps x gaze.{key} gives {per_task_batch} samples per batch (at "
                              f"most {MAX_SAMPLES_PER_BATCH}): lower fps or {key}")
    if s.task_batch_max_ms < s.task_batch_ms:
        raise ConfigError(f"{where}: gaze.task_batch_max_ms ({s.task_batch_max_ms}) is below gaze.task_batch_ms "
                          f"({s.task_batch_ms}): the longest task batch interval cannot be shorter than the usual one")
    frames = s.round_frames
    dots = max(s.calibration_points, s.validation_points)
    if frames > MAX_FRAMES_PER_ROUND:  # (browser mode: landmark samples, as many, the same bound)
        what = "samples" if s.compute == "browser" else f"frames of {s.width}x{s.height}"
        by = ("twice gaze.min_frames" if 2 * s.min_frames >= s.target_frames else
              "gaze.fps x (gaze.settle_ms + 50 ms)")
        raise ConfigError(
            f"{where}: a calibration round would send {frames} {what} ({dots} dots x {s.target_frames} a dot, "
            f"{by}; at most {MAX_FRAMES_PER_ROUND} a round): lower gaze.min_frames (a dot sends up to twice "
            f"it), gaze.calibration_points or gaze.fps x gaze.settle_ms")
    size = frames * s.width * s.height * JPEG_BYTES_PER_PIXEL
    if s.compute == "server" and size > MAX_ROUND_BYTES:
        raise ConfigError(
            f"{where}: a calibration round would send {frames} frames of {s.width}x{s.height} (about "
            f"{size / 2**20:.0f} MiB; at most {MAX_ROUND_BYTES // 2**20} MiB): lower the frame size (gaze.width, "
            f"gaze.height) or the frames a round (gaze.min_frames, gaze.calibration_points, gaze.fps x gaze.settle_ms)")


def calibration_warnings(s: GazeSettings) -> list[str]:
    """Settings under which no participant can pass a calibration, whatever their camera: a dot
    collects the pictures of at most ``settle_ms`` before its click and ``target_timeout_ms``
    after it (calibration.js), so at ``fps`` fewer than ``min_frames`` usable ones would starve
    every round (the fallback would apply to everyone). ``gazepref study check`` prints them and
    the site logs them when it starts; not refused, so a test may starve rounds on purpose."""
    most = s.fps * (s.settle_ms + s.target_timeout_ms) // 1000 + 1  # (a picture at each end of the window)
    if most >= s.min_frames:
        return []
    return [f"gaze.min_frames = {s.min_frames} usable pictures a dot, but at gaze.fps = {s.fps} a dot gets at most "
            f"{most} (gaze.settle_ms + gaze.target_timeout_ms = {s.settle_ms + s.target_timeout_ms} ms): every "
            f"calibration round would end short of pictures; raise fps or target_timeout_ms, or lower min_frames"]


def validation_targets(n: int, width: float, height: float) -> list[tuple[float, float]]:
    """Validation points apart from every calibration grid (5/9/13 use 0.1, 0.3, 0.5, 0.7, 0.9)."""
    pts = [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)][:n]
    return [(fx * width, fy * height) for fx, fy in pts]
