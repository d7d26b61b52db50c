"""How webcam picture conditions (dim, noisy, over-exposed, back-lit, JPEG-compressed, motion-
blurred, small, unevenly lit, colour-cast, glare on glasses) change the gaze pipeline's features,
its quality flags, and the calibrated error of ``gaze evaluate``.

    .venv/bin/python benchmarks/gaze_conditions.py [--parts jitter error] [--conditions dim blur ...]
        [--sessions 4] [--people 1] [--pictures 16] [--apply odd|all] [--seed 0] [--json]

Each condition is an image operation at two or three strengths (:data:`CONDITIONS`), applied to
the synthetic pictures the other benchmarks build (the astronaut photo, ``synthetic_face``), after
their sensor noise (2 grey levels) and before the final JPEG (quality 90). Two parts:

* ``jitter`` (a still face, ``--pictures`` pictures with sub-pixel shifts and their own sensor
  noise, at 640 x 480 with an eye span of ~80 px, through ``GazeTracker(static_image_mode=True)``
  as ``gaze evaluate`` runs it): the share of pictures with a face, the iris offsets' standard
  deviation (jitter) and their mean's shift from the clean pictures' (bias), in degrees of the
  eye's turn (``landmark_jitter.degrees``), the eye aspect ratio's mean, the eye patches' mean
  absolute change from the clean mean patch (0-1 grey), and each flag's share (TOO_DARK, BLUR,
  BLINK, OVEREXPOSED), and the usable share (a face, no blink: ``gaze_session.UNUSABLE``).
* ``error`` (``benchmarks/gaze_accuracy.py``'s manifest: ``--people`` x ``--sessions`` sessions of
  16 targets, one round each; the condition applied to the odd sessions (``--apply odd``: a
  person's light changes between sittings, so one-round calibrates in one condition and predicts
  in both) or to all): ``auto``'s error for both ``gaze evaluate`` protocols, the usable share of
  the perturbed pictures, the share guessed as the targets' mean, and the flags' shares there.

The base pictures are the same for every condition (same seed), so the rows of one run compare
paired; compare figures only within one run (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from gazepref.schema import GazeFlag
from gazepref.signals.eye_features import EYES
from gazepref.signals.face_mesh import FaceMeshRunner
from gazepref.signals.gaze_batch import image_features, person_errors, read_manifest, split_predictions
from gazepref.signals.gaze_session import UNUSABLE
from gazepref.signals.synthetic_face import EYE_CONTOURS, face_frame
from gazepref.signals.webcam import GazeTracker

sys.path.insert(0, str(Path(__file__).parent))
from gaze_accuracy import MODELS, build_manifest  # noqa: E402
from landmark_jitter import degrees  # noqa: E402

FLAGS = (("dark", GazeFlag.TOO_DARK), ("blur", GazeFlag.BLUR), ("blink", GazeFlag.BLINK),
         ("noface", GazeFlag.NO_FACE), ("over", getattr(GazeFlag, "OVEREXPOSED", 0)))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _background(image: np.ndarray) -> np.ndarray:
    """Mask of the synthetic pictures' flat grey ground (96, 96, 96) before noise: roughly."""
    return (np.abs(image.astype(np.int16) - 96) <= 8).all(axis=2)


def dim(image, pts, rng, gain):
    """Less light on a sensor at its highest gain: the signal times ``gain``, plus the read noise
    that no longer drowns in it (3 grey levels), quantised to 8 bits (a face of 130 grey at
    gain 0.2 keeps ~26 levels)."""
    return _u8(image.astype(np.float32) * gain + rng.normal(0, 3, image.shape))


def noise(image, pts, rng, sd):
    """Sensor noise (a dim room with the camera's gain raised: the brightness restored, the noise
    amplified), independent per pixel and channel."""
    return _u8(image.astype(np.float32) + rng.normal(0, sd, image.shape))


def over(image, pts, rng, gain):
    """Over-exposure: the signal times ``gain``, clipped at 255."""
    return _u8(image.astype(np.float32) * gain)


def backlight(image, pts, rng, face_gain):
    """A window behind the person: the ground at 250 and the camera exposing for it, the face
    (everything else) times ``face_gain``, with read noise of 3 levels."""
    out = image.astype(np.float32) * face_gain
    out[_background(image)] = 250
    return _u8(out + rng.normal(0, 3, image.shape))


def jpeg(image, pts, rng, quality):
    """Strong JPEG compression (a browser's canvas.toBlob at a low quality), before the manifest's
    own quality-90 copy."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def motion(image, pts, rng, length):
    """Motion blur: a ``length`` px line kernel in a random direction (at 640 px wide)."""
    k = np.zeros((int(length), int(length)), np.float32)
    k[int(length) // 2, :] = 1
    m = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, m, k.shape[::-1])
    return cv2.filter2D(image, -1, k / k.sum())


def small(image, pts, rng, width):
    """A lower resolution: the picture resized to ``width`` px wide (area averaging), kept so."""
    h, w = image.shape[:2]
    return cv2.resize(image, (int(width), round(int(width) * h / w)), interpolation=cv2.INTER_AREA)


def uneven(image, pts, rng, far):
    """Light from one side: the gain falls linearly across the face from 1 to ``far`` (left to
    right, over the face's width; flat beyond it), with read noise of 3 levels."""
    h, w = image.shape[:2]
    x0, x1 = (pts[:, 0].min(), pts[:, 0].max()) if pts is not None else (0, w)
    ramp = np.clip((np.arange(w) - x0) / max(x1 - x0, 1), 0, 1)
    gain = 1 + (far - 1) * ramp
    return _u8(image.astype(np.float32) * gain[None, :, None] + rng.normal(0, 3, image.shape))


def cast(image, pts, rng, strength):
    """A colour cast (warm indoor light, an uncorrected white balance): BGR gains
    (1 - 0.35 s, 1 - 0.1 s, 1 + 0.25 s)."""
    g = np.array([1 - 0.35 * strength, 1 - 0.1 * strength, 1 + 0.25 * strength], np.float32)
    return _u8(image.astype(np.float32) * g)


def glare(image, pts, rng, radius):
    """Reflections in glasses: a white ellipse (``radius`` eye widths, 80 % opaque) on each eye
    near the eye opening's centre (a random offset of a third of the eye width)."""
    if pts is None:
        return image
    out = image.astype(np.float32)
    for (a, b), _ in EYE_CONTOURS:
        w = float(np.linalg.norm(pts[b] - pts[a]))
        c = (pts[a] + pts[b]) / 2 + rng.uniform(-w / 3, w / 3, 2)
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.ellipse(mask, (int(c[0]), int(c[1])), (max(1, int(radius * w)), max(1, int(radius * w * 0.6))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32)[..., None] / 255 * 0.8
        out = out * (1 - mask) + 255 * mask
    return _u8(out)


#: name -> (operation, strengths, what the strength means)
CONDITIONS = {
    "clean": (None, [None], ""),
    "dim": (dim, [0.4, 0.2, 0.1], "gain"),
    "noise": (noise, [8, 16, 24], "sd"),
    "over": (over, [1.6, 2.0, 2.4], "gain"),
    "backlight": (backlight, [0.5, 0.3], "face gain"),
    "jpeg": (jpeg, [30, 12, 6], "quality"),
    "motion": (motion, [5, 9, 15], "px"),
    "small": (small, [320, 224], "width px"),
    "uneven": (uneven, [0.5, 0.25], "far gain"),
    "cast": (cast, [1.0, 2.0], "strength"),
    "glare": (glare, [0.15, 0.3], "eye widths"),
}


def _variants(names):
    for name in names:
        op, strengths, unit = CONDITIONS[name]
        for s in strengths:
            yield name, s, unit, op


def _flag_shares(flags: np.ndarray) -> dict[str, float]:
    out = {k: float(((flags & bit) != 0).mean()) for k, bit in FLAGS}
    out["usable"] = float(((flags & UNUSABLE) == 0).mean())
    return out


def jitter_part(names, pictures: int, seed: int) -> list[dict]:
    """Features of a still face under each condition (module docstring)."""
    rng = np.random.default_rng(seed)
    base = []
    for _ in range(pictures):
        img = face_frame(scale=1.0, dx=rng.uniform(-1, 1), dy=rng.uniform(-1, 1), size=(640, 480))
        base.append(_u8(img + rng.normal(0, 2, img.shape)))
    with FaceMeshRunner(static_image_mode=True) as mesh:  # the face's place, for glare and uneven light
        faces = mesh.process(cv2.cvtColor(base[0], cv2.COLOR_BGR2RGB))
        ref_pts = faces[0] if faces else None
    iris = [f"eye_{e.name}_iris_{a}" for e in EYES for a in "uv"]
    patch = [f"eye_{e.name}_patch_{i:03d}" for e in EYES for i in range(60)]
    out, clean, clean_patch = [], None, None
    for name, strength, unit, op in _variants(names):
        prng = np.random.default_rng(seed + 1)
        rows = []
        with GazeTracker(static_image_mode=True) as tracker:
            for img in base:
                pic = img if op is None else op(img, ref_pts, prng, strength)
                ok, buf = cv2.imencode(".jpg", pic, [cv2.IMWRITE_JPEG_QUALITY, 90])
                rows.append(tracker.process_jpeg(buf.tobytes()))
        flags = np.array([int(r["flags"]) for r in rows])
        found = [r for r in rows if not int(r["flags"]) & GazeFlag.NO_FACE]
        res = {"condition": name, "strength": strength, "unit": unit, **_flag_shares(flags),
               "found": len(found) / len(rows)}
        if found:
            ir = np.array([[r[c] for c in iris] for r in found])  # l_u, l_v, r_u, r_v
            u, v = ir[:, [0, 2]].mean(axis=1), ir[:, [1, 3]].mean(axis=1)
            pa = np.array([[r[c] for c in patch] for r in found], np.float64)
            res.update(iris_u_sd_deg=degrees(float(np.std(u))), iris_v_sd_deg=degrees(float(np.std(v))),
                       u_mean=float(u.mean()), v_mean=float(v.mean()),
                       ear=float(np.mean([(r["eye_l_open"] + r["eye_r_open"]) / 2 for r in found])),
                       brightness=float(np.mean([r["face_brightness"] for r in found])),
                       sharpness=float(np.median([r["face_sharpness"] for r in found])),
                       patch_mean=pa.mean(axis=0))
            if clean is None:
                clean, clean_patch = res, res["patch_mean"]
            sign = lambda d: float(np.sign(d) * degrees(abs(d)))  # noqa: E731
            res["iris_u_bias_deg"] = sign(res["u_mean"] - clean["u_mean"])
            res["iris_v_bias_deg"] = sign(res["v_mean"] - clean["v_mean"])
            res["patch_change"] = float(np.nanmean(np.abs(res["patch_mean"] - clean_patch)))
        res.pop("patch_mean", None)
        out.append(res)
    return out


def error_part(names, sessions: int, people: int, seed: int, apply: str) -> list[dict]:
    """``auto``'s error under each condition on a gaze_accuracy manifest (module docstring)."""
    out = []
    for name, strength, unit, op in _variants(names):
        prng = np.random.default_rng(seed + 1)

        def perturb(image, pts, person, s):
            if op is None or (apply == "odd" and s % 2 == 0):
                return image
            return op(image, pts, prng, strength)

        res = {"condition": name, "strength": strength, "unit": unit}
        with tempfile.TemporaryDirectory() as tmp:
            manifest = read_manifest(build_manifest(Path(tmp), sessions, seed, 1, 2.0, 1.0, perturb, people))
            errs: dict[str, list[float]] = {}
            flags_hit = []
            guessed = []
            for person, rows in manifest.groupby("person", sort=True):
                features, _ = image_features(rows["image"])
                targets = rows[["x", "y"]].to_numpy(dtype=np.float64)
                sess = rows["session"].to_numpy()
                hit = np.array([op is not None and (apply == "all" or int(s[1:]) % 2 == 1) for s in sess])
                flags = features["flags"].to_numpy(np.int64)
                flags_hit.append(flags[hit] if hit.any() else flags)
                for protocol in ("leave-session-out", "one-round"):
                    splits = split_predictions(features, targets, sess, MODELS["auto"], protocol)
                    r = person_errors(targets, splits, protocol, sess)
                    errs.setdefault(protocol, []).append(r["error_px"])
                    guessed.append(r.get("guessed_ratio") or 0.0)
        res.update({"lso_px": float(np.mean(errs["leave-session-out"])),
                    "one_round_px": float(np.mean(errs["one-round"])),
                    "guessed": float(np.mean(guessed)), **_flag_shares(np.concatenate(flags_hit))})
        out.append(res)
        print(f"  [{name} {strength}] lso {res['lso_px']:.0f} one-round {res['one_round_px']:.0f}",
              file=sys.stderr, flush=True)
    return out


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=["jitter", "error"], choices=["jitter", "error"])
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--people", type=int, default=1, choices=[1, 2])
    ap.add_argument("--pictures", type=int, default=16)
    ap.add_argument("--apply", choices=["odd", "all"], default="odd")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = ["clean"] + [n for n in args.conditions if n != "clean"]
    out = {}
    if "jitter" in args.parts:
        out["jitter"] = jitter_part(names, args.pictures, args.seed)
    if "error" in args.parts:
        out["error"] = error_part(names, args.sessions, args.people, args.seed, args.apply)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if "jitter" in out:
        print(f"still face, {args.pictures} pictures, 640x480, eye span ~80 px (deg of the eye's turn)")
        print("condition          found usable dark  blur  blink over  bright sharp  EAR   "
              "u_sd  v_sd  u_bias v_bias patch")
        for r in out["jitter"]:
            print(f"{r['condition']:9s} {_f(r['strength'], '{}'):>7s}  {r['found']:.2f}  {r['usable']:.2f}  "
                  f"{r['dark']:.2f}  {r['blur']:.2f}  {r['blink']:.2f}  {r['over']:.2f}  "
                  f"{_f(r.get('brightness'), '{:5.0f}')}  "
                  f"{_f(r.get('sharpness'), '{:.3f}')} {_f(r.get('ear'), '{:.3f}')} "
                  f"{_f(r.get('iris_u_sd_deg'))}  {_f(r.get('iris_v_sd_deg'))}  "
                  f"{_f(r.get('iris_u_bias_deg'), '{:+.2f}')}  "
                  f"{_f(r.get('iris_v_bias_deg'), '{:+.2f}')}  {_f(r.get('patch_change'), '{:.3f}')}")
    if "error" in out:
        print(f"gaze evaluate, auto, {args.people} person(s) x {args.sessions} sessions x 16 targets, "
              f"condition on {args.apply} sessions (flags: share of those pictures)")
        print("condition          LSO px  1-round px  guessed usable dark  blur  blink noface over")
        for r in out["error"]:
            print(f"{r['condition']:9s} {_f(r['strength'], '{}'):>7s}  {r['lso_px']:6.0f}  {r['one_round_px']:8.0f}  "
                  f"{r['guessed']:7.2f}  {r['usable']:.2f}  {r['dark']:.2f}  {r['blur']:.2f}  {r['blink']:.2f}  "
                  f"{r['noface']:.2f}  {r['over']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
