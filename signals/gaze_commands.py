"""CLI: ``gazepref gaze track``, ``gaze evaluate`` and ``gaze recalibrate``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import UserError
from ..datasets.sources import add_database_arguments


def register(sub: argparse._SubParsersAction) -> None:
    gaze = sub.add_parser("gaze", help="webcam gaze: track videos, evaluate calibration accuracy")
    gsub = gaze.add_subparsers(dest="gaze_command", metavar="SUBCOMMAND", required=True)

    p = gsub.add_parser("track", help="run the webcam pipeline over a video file",
                        description="Run the per-frame pipeline (face mesh, eye features, head pose, "
                                    "quality flags) over every frame of VIDEO.")
    p.add_argument("video", help="video file OpenCV can read")
    p.add_argument("--out", help="write the per-frame features as Parquet (gaze stream columns; a new file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never VIDEO itself)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_track)

    p = gsub.add_parser("evaluate", help="calibration accuracy on images with known targets",
                        description="MANIFEST.csv has columns image,x,y,person,session (any order and case; "
                                    "comma, semicolon or tab separated; image paths relative to the "
                                    "manifest's folder; x,y the target in CSS px; docs/gaze.md, \"The "
                                    "manifest\"). Per person: "
                                    "leave-session-out (default) calibrates on the other sessions and "
                                    "predicts each held-out session; one-round calibrates on one session "
                                    "alone and predicts the others, averaged over the calibrating session.")
    p.add_argument("manifest", help="CSV manifest")
    p.add_argument("--protocol", choices=("leave-session-out", "one-round"), default="leave-session-out",
                   help="what calibrates: all of a person's other sessions (default) or one session alone")
    p.add_argument("--model", choices=("auto", "sight", "one-stage", "blend"), default="auto",
                   help="the calibration model: auto (default; where several sessions calibrate, "
                        "whichever of the others predicts held-out sessions best, else blend), "
                        "sight (line of sight), one-stage (eye features and head pose, as before "
                        "line of sight) or blend (the mean of sight and one-stage)")
    p.add_argument("--no-compare", dest="compare", action="store_const", const=False, default=None,
                   help="with --model auto, do not also evaluate sight, one-stage and blend on the same "
                        "images (by default they are, and their errors are printed beside auto's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_evaluate)

    p = gsub.add_parser("recalibrate", help="re-estimate a study's gaze from its stored eye features",
                        description="Re-map the stored gaze samples of STUDY's consenting participants "
                                    "(as data export: those who declined, withdrew or whose data a researcher "
                                    "deleted are skipped and only counted, participants_without_consent) "
                                    "from their eye features, with "
                                    "the calibration each task was recorded under (the outcome in force when "
                                    "it started) or with --model, and write "
                                    "one Parquet file per task to --out (OUT/<task_id>_gaze.parquet, with the "
                                    "participant_id and task_id columns of data export and features, and "
                                    "OUT/manifest.json listing them, with the calibration each used). Tasks recorded "
                                    "under a failed calibration stay without an estimate unless --include-failed. "
                                    "The database is not changed. A study "
                                    "without consenting participants or without any webcam calibration (webcam off) is an "
                                    "error (exit status 2) unless --model is given.")
    p.add_argument("study", help="study slug")
    add_database_arguments(p)
    p.add_argument("--model", help="calibration model file (GazeCalibration JSON) to use for everyone")
    p.add_argument("--interactions", action="store_true",
                   help="replay the tasks' clicks and caret samples with the study's corrector (continuous "
                        "calibration, or the offset of drift_correction alone), as the site did; a study whose site "
                        "corrected nothing (interaction_calibration = false, no drift_correction) with "
                        "continuous calibration, its manifest's site_corrected false (default: leave them out)")
    p.add_argument("--include-failed", action="store_true",
                   help="also estimate the gaze of tasks recorded under a failed calibration (the "
                        "record-uncalibrated fallback), with that step's best attempt (or --model); their rows "
                        "keep the CALIBRATION_FAILED flag (default: they stay without an estimate, as stored)")
    p.add_argument("--out", required=True, help="output folder (new or empty; written whole at the end)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's --out folder (one holding only what gaze recalibrate wrote)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_recalibrate)


def _progress(enable: bool):
    from ..progress import progress

    return lambda it, total: progress(it, total=total, desc="frames", enable=enable)


def _track(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .gaze_batch import track_video

    out = None
    if args.out:  # checked before the frames are processed
        out = Path(args.out).expanduser()
        if not out.parent.is_dir():
            raise UserError(f"no such folder for --out: {out.parent}")
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; give the Parquet file to write")
        if out.exists() and Path(args.video).expanduser().exists() and out.samefile(Path(args.video).expanduser()):
            raise UserError(f"--out {out} is the video itself")
        if out.suffix.lower() != ".parquet":  # (what is written is Parquet, whatever the name)
            raise UserError(f"--out must end in .parquet (the rows are written as Parquet): {out}")
        if out.exists() and not args.overwrite:
            raise UserError(f"--out {out} exists (use --overwrite to replace it)")
    emit(track_video(args.video, out, progress=_progress(True)), args.json)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .gaze_batch import evaluate_manifest

    result = evaluate_manifest(args.manifest, progress=_progress(True), protocol=args.protocol, kind=args.model,
                               compare=args.compare, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    if result["mean_error_px"] is None:  # (each person's reason is in the result too)
        reasons = sorted({r["reason"] for r in result["per_person"].values() if r.get("reason")})
        print(f"warning: no person got a figure ({'; '.join(reasons) or 'no prediction'})", file=sys.stderr)
    if result["images_in_several_sessions"]:
        print(f"warning: {result['images_in_several_sessions']} image(s) are listed under two or more sessions of "
              "one person; each then calibrates the prediction of itself", file=sys.stderr)
    if args.json:
        emit(result, True)
    else:
        summary = {k: v for k, v in result.items() if k not in ("per_person", "compared", "picture")}
        # read by people: px to 0.1 px, shares to 0.1 % (--json keeps the full figures)
        emit({k: (round(v, 1) if k.endswith("_px") else round(v, 3)) if isinstance(v, float) else v
              for k, v in summary.items()}, False)
        print(f"{'picture':<{max(map(len, summary))}}  {_picture(result['picture'])}")
        if "compared" in result:  # the other models' mean_error_px, lined up with the summary
            people = result["people"] - len(result["people_without_prediction"])
            print(f"{'compared':<{max(map(len, summary))}}  " + ", ".join(
                f"{k} {_px(c['mean_error_px'])} "
                f"(beats {args.model} for {c['people_better_than_main']} of {people} people{_fitted_as(k, c)})"
                for k, c in result["compared"].items()))
        for person, r in result["per_person"].items():
            err = _px(r["error_px"])
            models = ", ".join(f"{k} {n}" for k, n in r["models"].items())
            print(f"  {person}: {err} over {r['n']} images, {r['sessions']} session{'' if r['sessions'] == 1 else 's'}"
                  + (f" (models: {models})" if models else ""))
            if r.get("reason"):
                print(f"    no figure: {r['reason']}")
            if r["face_found_ratio"] is None:  # the evaluation failed: nothing more to say
                continue
            if r.get("bias_px") is not None:
                spread = "- (one image a dot)" if r["spread_px"] is None else _px(r["spread_px"])
                print(f"    per dot and session: bias {_px(r['bias_px'])}, spread {spread}; "
                      f"per session: offset {_px(r['session_offset_px'])}, "
                      f"error without it {_px(r['error_without_offset_px'])}")
            if r.get("guessed_ratio"):
                print(f"    predicted as the targets' mean (no face, a needed feature missing, no model): "
                      f"{r['guessed_ratio']:.0%} of the predictions")
            if r.get("fallback_ratio"):
                print(f"    predicted without a line of sight (the one-stage fallback): "
                      f"{r['fallback_ratio']:.0%} of the predictions")
            size = "-" if r["face_size_median"] is None else f"{r['face_size_median']:.3f}"
            print(f"    faces found {r['face_found_ratio']:.0%} (by the small-face search {r['small_face_ratio']:.0%}), "
                  f"usable {r['usable_ratio']:.0%}, eye span / width {size}")
            print(f"    picture: {_picture(r['picture'])}")
            sizes = ", ".join(f"{z} ({n})" for z, n in r["image_sizes"].items())
            print(f"    image sizes: {sizes or '-'}"
                  + (f"; unreadable {r['unreadable_images']}" if r["unreadable_images"] else ""))
            if "compared" in r:
                print("    compared: " + ", ".join(
                    f"{k} {_px(e)}" + _fitted_as(k, {"models": r.get("compared_models", {}).get(k, {})}, "(", ")")
                    for k, e in r["compared"].items()))
            for rnd in r.get("rounds", []):
                print(f"    calibrated on {rnd['session']}: {_px(rnd['error_px'])} over {rnd['n_predicted']} images")
            for held in r.get("held_out", []):
                print(f"    {held['session']} predicted: {_px(held['error_px'])} over {held['n_predicted']} images")
    return 0


def _picture(p: dict) -> str:
    """:func:`.gaze_batch.picture_conditions` for the text output."""
    if p["too_dark_ratio"] is None:
        return "no face found"
    sharp = "-" if p["sharpness_median"] is None else f"{p['sharpness_median']:.3f}"
    return (f"face brightness {p['brightness_median']:.0f} (too dark {p['too_dark_ratio']:.0%}), "
            f"sharpness {sharp} (blurred {p['blur_ratio']:.0%}), "
            f"over-exposed {p['overexposed_ratio']:.0%}, blinks {p['blink_ratio']:.0%}, "
            f"several faces {p['multiple_faces_ratio']:.0%}")


def _fitted_as(kind: str, compared: dict, before: str = "; ", after: str = "") -> str:
    """``"; fitted as one-stage 4 of 4"``: where a compared kind's calibrations were fitted as
    another kind (a round mostly without a line of sight gets the one-stage model); "" where all
    were the kind named (or, for ``auto``, any: it chooses)."""
    models = compared.get("models") or {}
    other = {k: n for k, n in models.items() if k != kind}
    if kind == "auto" or not other:
        return ""
    total = sum(models.values())
    return before + "fitted as " + ", ".join(f"{k} {n} of {total}" for k, n in other.items()) + after


def _px(error_px: float | None) -> str:
    """An error for the text output."""
    return "no prediction" if error_px is None else f"{error_px:.1f} px"


def _recalibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqlalchemy.exc import DatabaseError
    from sqlalchemy.orm import sessionmaker

    from .. import UserError, store
    from ..cli import emit
    from .calibration import GazeCalibration
    from .gaze_recalibrate import recalibrate_study

    model, source = None, None
    if args.model:
        import hashlib

        try:
            data = Path(args.model).read_bytes()
            model = GazeCalibration.from_bytes(data)
        except ValueError as e:
            raise UserError(f"{args.model}: {e}") from None
        source = {"file": Path(args.model).name, "sha256": hashlib.sha256(data).hexdigest()}
    url = store.database_url(args.db, args.instance, must_exist=True)
    engine = store.make_engine(url)
    try:
        with sessionmaker(engine)() as db:
            result = recalibrate_study(db, args.study, args.out, model, interactions=args.interactions,
                                       include_failed=args.include_failed, overwrite=args.overwrite,
                                       model_source=source)
    except DatabaseError as e:  # unreachable, or a file that is no database
        raise store.database_error(url, e, "read") from None
    finally:
        engine.dispose()
    emit(result, args.json)
    return 0
