"""Per-participant gaze calibration: eye features -> viewport CSS px.

:class:`GazeCalibration` is built from four standardised feature blocks:

* *sight*: where the eyes' line of sight meets the camera's plane (``sight_x_cm``,
  ``sight_y_cm``, :mod:`.line_of_sight`): eye-in-head turn and head pose combined by geometry;
* *eye*: iris position between the eye corners and lids, and eye openness (both eyes);
* *head*: head pose (yaw, pitch, roll, position) and face position/size in the image;
* *appearance*: the small equalised eye patches (WebGazer's feature).

Two models and their mean (``kind``):

* *sight* (rows with the sight columns): a ridge on the sight block (an affine map from the
  camera's plane to the screen: the same in every posture), refined by a second ridge of the eye
  and appearance blocks on its residuals. The eye and appearance features measure the eye's
  turn *in the head*: when the head moves or turns while the person keeps looking at the same
  point, they change (a head 5 cm to the side reads as gaze 5 cm to the side), so a model fitted
  on them in one sitting learns that sitting's posture. The sight block carries the head's part
  by geometry, which a calibration round (the head nearly still) could not teach.
* *one-stage* (also rows without the sight columns, e.g. recorded before they existed): one
  ridge on the eye, head and appearance blocks; the head block learns head compensation from
  data, which needs several sittings to learn from.
* *blend*: the mean of the two, one linear map (:meth:`GazeCalibration._fit_blend`). The two fail
  differently (the sight model carries the sight point's noise, the one-stage model the
  calibration's posture), and one sitting cannot show which failure a later one will meet.

A sight model or a blend predicts a row whose sight point is missing (a face whose line of
sight could not be found) by its *fallback*, the one-stage model on the columns it lists
(:meth:`GazeCalibration._fit_fallback`), not as the targets' mean.

Block weights (a block-wise ridge penalty) and the ridge penalty are chosen, separately for x and
y, by cross-validation *inside the calibration data* (leave-one-session-out when sessions are
given, else k-fold) on the squared error in px; the model is then refitted on all calibration
samples. Without sessions the folds keep each target's frames together (frames of one dot share
its fixation error and the head posture of that moment: split between folds they let CV reward
memorising the dot). ``groups`` mean separate sittings: with two or more, the default ``kind``
("auto") keeps whichever of the three predicts held-out sittings best; without, it is the blend.

Two rejections guard the fit (both from first principles, no tuning to a data split):

* *blinks*: rows whose eye openness (mean eye aspect ratio) is below ``blink_ratio`` x the
  calibration rows' median are dropped (a closing eye moves the lids and iris landmarks
  without the gaze moving; looking down narrows the eyes by about a third, a blink by far more);
* *outliers*: rows whose out-of-fold error (target-grouped folds, the chosen hyper-parameters),
  in robust standard deviations per axis (1.4826 x MAD), has a norm above ``trim`` are dropped
  and the model refitted once (at most ``max_trim_fraction`` of the rows, the worst). With
  Gaussian errors that norm squared is chi-square(2), so the default 3.72 rejects 0.1 % of
  good frames; a frame taken while the participant looked elsewhere is off by the distance
  between targets (hundreds of px, many robust SDs).

Everything
learned is plain numbers, so a fitted model round-trips through JSON (:meth:`to_bytes`,
:meth:`from_bytes`) for ``store.Calibration.model``.

Also here: the 5/9/13-point target grids, drift correction from clicks (:class:`DriftCorrector`,
an offset) and continuous calibration from interactions (:class:`InteractionRecalibrator`, a
recency- and quality-weighted affine correction refitted with each click).
"""
from __future__ import annotations

import json
import math
import operator
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut
from sklearn.utils.validation import check_is_fitted

from ..schema import GazeFlag
from . import eye_features, head_pose, line_of_sight

FORMAT = "gazepref.gaze-calibration/1"

EYE_COLUMNS = tuple(c for e in eye_features.EYES for c in eye_features.geometry_columns(e.name))
HEAD_COLUMNS = (*head_pose.COLUMNS, "face_x", "face_y", "face_size")
SIGHT_COLUMNS = line_of_sight.COLUMNS
GEOMETRY_COLUMNS = EYE_COLUMNS + HEAD_COLUMNS
APPEARANCE_PREFIX = "_patch_"

_BOUNDS = ("feature_min", "feature_max", "target_min", "target_max")

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
DEFAULT_HEAD_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
DEFAULT_EYE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
#: the ``kind`` values of :class:`GazeCalibration`
KINDS = ("auto", "sight", "one-stage", "blend")
DEFAULT_APPEARANCE_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
#: parameters added after the first saved models; a saved model without them was fitted with
#: these values (the behaviour before they existed), so that is what loading it reports
_LEGACY_PARAMS = {"group_targets": False, "blink_ratio": None, "trim": None, "max_trim_fraction": 0.1,
                  "kind": "one-stage", "sight_corrections": False,
                  "eye_weights": DEFAULT_EYE_WEIGHTS}
#: outlier threshold in robust standard deviations of the out-of-fold error (2-D): with Gaussian
#: errors the squared norm is chi-square with 2 degrees of freedom, P(norm > t) = exp(-t^2 / 2),
#: so t = sqrt(2 ln 1000) = 3.72 rejects 0.1 % of good frames
TRIM_SIGMAS = float(np.sqrt(2 * np.log(1000)))
OPEN_COLUMNS = tuple(f"eye_{e.name}_open" for e in eye_features.EYES)


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, Mapping):
        return pd.DataFrame([X])
    return pd.DataFrame(list(X))


def _appearance_columns(columns: Iterable[str]) -> list[str]:
    return sorted(c for c in columns if c.startswith("eye_") and APPEARANCE_PREFIX in c)


class GazeCalibration(RegressorMixin, BaseEstimator):
    """Ridge from eye features to screen px with CV-chosen penalty and block weights.

    Parameters
    ----------
    alphas : ridge penalties tried (on standardised features).
    head_weights : scale factors tried for the standardised head/face block (0 = left out).
    appearance_weights : scale factors tried for the standardised eye-patch block (0 = left
        out). A larger weight means a smaller effective penalty on that block.
    use_appearance : use the eye patches at all.
    cv : folds when no ``groups`` are given to :meth:`fit`.
    clip : features and predictions are clipped to their calibration range widened by this
        fraction of it (None: no clipping). A linear model must not extrapolate far: a feature
        that barely varied during calibration (head distance within one sitting) can lie many
        standard deviations away later, and its coefficient would throw the gaze off screen.
    fill_missing : predict the calibration targets' mean (instead of NaN) for samples whose
        features are missing (no face).
    group_targets : without ``groups``, CV folds keep the rows of one target together (else
        rows are shuffled into folds).
    blink_ratio : rows whose mean eye openness is below this fraction of the calibration rows'
        median are left out (None: keep them).
    trim : rows whose out-of-fold error exceeds this many robust standard deviations (norm over
        x and y) are left out and the model refitted (None: no trimming).
    max_trim_fraction : at most this fraction of the rows is trimmed (the largest errors).
    kind : which model (:meth:`_fit_kind`, :meth:`_choose_kind`): ``"sight"`` (the line-of-sight model whenever the
        rows have the ``sight_*_cm`` columns), ``"one-stage"`` (never: the eye, head and
        appearance blocks, as for rows recorded before those columns existed), ``"blend"``
        (their mean, with the sight columns) or ``"auto"`` (where ``groups`` name two or more
        sittings, whichever of the three has the smallest leave-one-sitting-out error; else
        blend). Rows without the sight columns always get the one-stage model, and so do rows
        where the line of sight is missing on more than half of them (less than half the round's
        usable rows would fit, and most predictions would fall back).
    sight_corrections : with the line-of-sight columns (``sight_*_cm``) present, refine the
        sight block with the eye and appearance blocks fitted to its residuals (a second stage,
        weights from ``eye_weights`` and ``appearance_weights``, including none, chosen by CV;
        see :meth:`_fit_sight`). False: the sight block alone. The head block is never used
        with the sight block (head movement enters by geometry).
    eye_weights : scale factors tried for the eye block when it corrects the sight block.
    """

    def __init__(
        self,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        head_weights: Sequence[float] = DEFAULT_HEAD_WEIGHTS,
        appearance_weights: Sequence[float] = DEFAULT_APPEARANCE_WEIGHTS,
        use_appearance: bool = True,
        cv: int = 5,
        clip: float | None = 0.1,
        fill_missing: bool = False,
        group_targets: bool = True,
        blink_ratio: float | None = 0.5,
        trim: float | None = TRIM_SIGMAS,
        max_trim_fraction: float = 0.1,
        kind: str = "auto",
        sight_corrections: bool = True,
        eye_weights: Sequence[float] = DEFAULT_EYE_WEIGHTS,
    ) -> None:
        self.alphas = alphas
        self.head_weights = head_weights
        self.appearance_weights = appearance_weights
        self.use_appearance = use_appearance
        self.cv = cv
        self.clip = clip
        self.fill_missing = fill_missing
        self.group_targets = group_targets
        self.blink_ratio = blink_ratio
        self.trim = trim
        self.max_trim_fraction = max_trim_fraction
        self.kind = kind
        self.sight_corrections = sight_corrections
        self.eye_weights = eye_weights

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, groups: Sequence[Any] | None = None) -> GazeCalibration:
        """Fit on feature rows ``X`` (DataFrame or dicts with eye_/head_/sight_/face_ columns)
        and targets ``y`` (n x 2 px). ``groups``: the sitting (session) of each row, for
        leave-one-sitting-out CV of the hyper-parameters and, with ``kind="auto"``, of the model;
        not the rounds of one sitting (they cannot show what head movement does). Rows with
        missing features are dropped.
        """
        if self.kind not in KINDS:
            raise ValueError(f"unknown calibration kind {self.kind!r} (one of {', '.join(KINDS)})")
        frame = _as_frame(X)
        y = np.asarray(y, dtype=np.float64).reshape(len(frame), 2)
        groups = None if groups is None else np.asarray(groups)
        if self.kind == "one-stage" or not set(SIGHT_COLUMNS) <= set(frame.columns):
            kind = "one-stage"
        elif not any(self._blocks(frame.columns, "one-stage")[b] for b in ("eye", "head")):
            kind = "sight"  # (no eye or head columns: a one-stage model, or a blend's half, would be a constant)
        elif 2 * self._n_usable(frame, y, "sight" if self.kind == "sight" else "blend") < max(
                8, self._n_usable(frame, y, "one-stage")):
            # the line of sight missing on most rows (the eyes' rays missed the eyeball or turned
            # past 45 deg: landmarks and head pose disagree): a model that needs it would fit on
            # a minority of the round and fall back on most predictions; as without the columns
            kind = "one-stage"
        elif self.kind == "sight":
            kind = "sight"
        elif self.kind == "auto" and groups is not None and len(pd.unique(groups)) >= 2:
            kind = self._choose_kind(frame, y, groups)
        else:
            kind = "blend"
        blocks = self._blocks(frame.columns, kind)
        names = [c for cols in blocks.values() for c in cols]
        if not names:
            raise ValueError("no gaze feature columns (eye_*, head_*, sight_*, face_*) in the calibration data")
        values, y, groups, blinks = self._usable_rows(frame, y, groups, names)

        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = len(names)
        block_of = np.repeat(list(blocks), [len(c) for c in blocks.values()])
        self.n_blinks_rejected_ = int(blinks)
        fit = self._fit_kind(kind, values, y, groups, blocks, block_of)
        self.n_outliers_rejected_ = 0
        if self.trim is not None and len(values) >= 8:
            err = self._trim_errors(fit, y)
            worst = np.argsort(-err)[:int(self.max_trim_fraction * len(values))]
            drop = worst[err[worst] > self.trim]
            if len(drop) and len(values) - len(drop) >= 4:
                ok = np.ones(len(values), bool)
                ok[drop] = False
                values, y = values[ok], y[ok]
                groups = None if groups is None else groups[ok]
                fit = self._fit_kind(kind, values, y, groups, blocks, block_of)
                self.n_outliers_rejected_ = int(len(drop))
        if kind in ("sight", "blend"):  # the stages' own CV figures see stage 1 fitted on every row
            fit["cv_error_px_"] = float(np.linalg.norm(
                self._oof(fit, y, list(self._folds(y, groups)), self.clip) - y, axis=1).mean())
        for k, v in fit.items():
            if not k.startswith("_"):
                setattr(self, k, v)
        self.fallback_coef_, self.fallback_intercept_ = self._fit_fallback(kind, fit, values, y, groups, blocks,
                                                                           block_of)
        self.target_mean_ = y.mean(axis=0)
        self.feature_min_, self.feature_max_ = _bounds(values, self.clip)
        self.target_min_, self.target_max_ = _bounds(y, self.clip)
        self.n_samples_fit_ = int(len(values))
        return self

    def _blocks(self, columns: Iterable[str], kind: str) -> dict[str, list[str]]:
        """The feature columns per block that a model of ``kind`` uses (and so lists and needs).

        ``one-stage``: the eye, head and appearance blocks. ``sight``: the sight block, with
        ``sight_corrections`` the eye and appearance blocks too (stage 2); never the head block
        (head movement enters by geometry). ``blend``: what either uses."""
        if kind == "blend":
            sight, one = self._blocks(columns, "sight"), self._blocks(columns, "one-stage")
            order = list(columns)
            return {b: sorted(set(sight[b]) | set(one[b]), key=order.index) for b in sight}
        columns = set(columns)
        eye = [c for c in EYE_COLUMNS if c in columns]
        app = _appearance_columns(columns) if self.use_appearance else []
        if kind == "sight":
            corrections = self.sight_corrections
            return {"sight": list(SIGHT_COLUMNS), "eye": eye if corrections else [], "head": [],
                    "appearance": app if corrections else []}
        return {"sight": [], "eye": eye, "head": [c for c in HEAD_COLUMNS if c in columns], "appearance": app}

    def _usable_rows(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None, names: list[str],
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """(values, targets, groups) of the rows with every feature of ``names`` and the target
        known and the eyes open (:func:`blink_rows`), and how many blinks were left out."""
        values = frame[names].to_numpy(dtype=np.float64)
        keep = np.isfinite(values).all(axis=1) & np.isfinite(y).all(axis=1)
        blinks = keep & blink_rows(frame, self.blink_ratio)
        keep &= ~blinks
        if keep.sum() < 4:
            raise ValueError(f"too few usable calibration samples ({int(keep.sum())}; need at least 4)")
        return values[keep], y[keep], None if groups is None else groups[keep], int(blinks.sum())

    def _n_usable(self, frame: pd.DataFrame, y: np.ndarray, kind: str) -> int:
        """How many rows a model of ``kind`` could fit on (:meth:`_usable_rows`, without raising)."""
        names = [c for cols in self._blocks(frame.columns, kind).values() for c in cols]
        keep = np.isfinite(frame[names].to_numpy(dtype=np.float64)).all(axis=1) & np.isfinite(y).all(axis=1)
        return int((keep & ~blink_rows(frame, self.blink_ratio)).sum())

    def _choose_kind(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> str:
        """``kind="auto"`` with two or more sittings: "sight", "one-stage" or "blend" (their
        mean), whichever predicts held-out sittings best. The two are fitted on the rows usable by
        both, their hyper-parameters chosen on the same leave-one-sitting-out folds, and scored out
        of fold with those hyper-parameters, every stage refitted without the held-out sitting
        (the hyper-parameters themselves were chosen on those folds, for both models alike); the
        blend's out-of-fold predictions are the mean of theirs (clipped as one). Within one sitting CV cannot show
        what head movement does, so there nothing is chosen (``blend``, see :meth:`fit`)."""
        blocks = self._blocks(frame.columns, "blend")
        names = [c for cols in blocks.values() for c in cols]
        try:
            values, yk, gk, _ = self._usable_rows(frame, y, groups, names)
        except ValueError:
            return "sight"
        if len(pd.unique(gk)) < 2:  # one sitting left
            return "blend"
        block_of = np.repeat(list(blocks), [len(c) for c in blocks.values()])
        folds = list(self._folds(yk, gk))
        fit = self._fit_kind("blend", values, yk, gk, blocks, block_of)
        oof = {kind: self._oof(part, yk, folds, self.clip) for kind, (_, part) in zip(("sight", "one-stage"),
                                                                                   fit["_parts"])}
        oof["blend"] = self._oof(fit, yk, folds, self.clip)
        error = {kind: float(np.linalg.norm(p - yk, axis=1).mean()) for kind, p in oof.items()}
        return min(error, key=error.get)  # the first of equals: sight, then one-stage

    def _fit_kind(self, kind: str, values: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                  blocks: dict[str, list[str]], block_of: np.ndarray) -> dict[str, Any]:
        """The fitted attributes (a dict) of a model of ``kind`` on ``blocks``.

        ``one-stage``: one ridge over the eye, head and appearance blocks, their weights and alpha
        chosen by CV. ``sight``: see :meth:`_fit_sight`. ``blend``: see :meth:`_fit_blend`."""
        if kind == "blend":
            return self._fit_blend(values, y, groups, blocks, block_of)
        present = {k: bool(v) for k, v in blocks.items()}
        if kind == "sight":
            return self._fit_sight(values, y, groups, block_of, present)
        fit = self._fit_arrays(values, y, groups, block_of, self._block_weight_candidates(present))
        return {**fit, "model_kind_": "one-stage", "correction_alpha_": np.full(2, np.nan)}

    def _fit_blend(self, values: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                   blocks: dict[str, list[str]], block_of: np.ndarray) -> dict[str, Any]:
        """The mean of the sight and the one-stage model, each fitted (hyper-parameters by CV) on
        the columns it uses: one linear map, their coefficients averaged.

        Why a mean: the two fail differently. The sight model carries head movement by geometry
        but also the noise of the sight point (the iris landmark, the head pose); the one-stage
        model weighs the eye features and patches freely but learns the calibration's posture. A
        sitting's own rows cannot show which failure a later sitting will meet (within it the
        head barely moves), so neither can be preferred from them, and where the errors are not
        the same, their mean errs less than the worse of the two and often less than either
        (docs/gaze.md, "Line of sight"). Reported hyper-parameters: the sight part's
        ``sight_weight_``, ``eye_weight_`` (its stage 2) and ``correction_alpha_``, the one-stage
        part's ``alpha_``, ``head_weight_`` and ``appearance_weight_``."""
        names = np.array([c for cols in blocks.values() for c in cols])
        parts = []
        for kind in ("sight", "one-stage"):
            used = self._blocks(names, kind)
            mask = np.isin(names, [c for cols in used.values() for c in cols])
            parts.append((mask, self._fit_kind(kind, values[:, mask], y, groups, used, block_of[mask])))
        (ms, sight), (mo, one) = parts
        coef = np.zeros((2, values.shape[1]))
        coef[:, ms] += sight["coef_"] / 2
        coef[:, mo] += one["coef_"] / 2
        scale = values.std(axis=0)
        return {
            "mean_": values.mean(axis=0), "scale_": np.where(scale > 1e-9, scale, 1.0), "coef_": coef,
            "intercept_": (sight["intercept_"] + one["intercept_"]) / 2,
            "sight_weight_": sight["sight_weight_"], "eye_weight_": sight["eye_weight_"],
            "correction_alpha_": sight["correction_alpha_"], "alpha_": one["alpha_"],
            "head_weight_": one["head_weight_"], "appearance_weight_": one["appearance_weight_"],
            "cv_error_px_": float("nan"),  # fit() sets it: both parts refitted per fold
            "model_kind_": "blend", "_parts": parts,
        }

    def _fit_sight(self, values: np.ndarray, y: np.ndarray, groups: np.ndarray | None, block_of: np.ndarray,
                   present: dict[str, bool]) -> dict[str, Any]:
        """The sight model, in two stages: (1) a ridge on the sight block alone (an affine map
        from the camera's plane to the screen, alpha by CV); (2) with ``sight_corrections``, a
        ridge on the eye and appearance blocks fitted to stage 1's residuals (weights,
        including none, and alpha by CV), added to it. The head block is never used: head
        movement enters by geometry. In one joint ridge the eye features, which follow the
        gaze within a sitting as well as the sight block does, would take weight from it, and
        with that weight the head compensation only the sight block carries; fitted to the
        residuals they can only refine the eye-in-head part (a landmark's error, the iris
        landmark's gain), which holds in any posture.
        """
        none = {"sight": 0.0, "eye": 0.0, "head": 0.0, "appearance": 0.0}
        first = self._fit_arrays(values, y, groups, block_of, [{**none, "sight": 1.0}])
        first.update(model_kind_="sight", correction_alpha_=np.full(2, np.nan))
        if not (self.sight_corrections and (present["eye"] or present["appearance"])):
            return first
        residual = y - (values @ first["coef_"].T + first["intercept_"])
        eyes = list(self.eye_weights) if present["eye"] else [0.0]
        apps = list(self.appearance_weights) if present["appearance"] else [0.0]
        second = self._fit_arrays(values, residual, groups, block_of,
                                  [{**none, "eye": e, "appearance": a} for e in eyes for a in apps], fold_on=y)
        return {
            **first,
            "coef_": first["coef_"] + second["coef_"],
            "intercept_": first["intercept_"] + second["intercept_"],
            "eye_weight_": second["eye_weight_"],
            "appearance_weight_": second["appearance_weight_"],
            "correction_alpha_": second["alpha_"],
            "_second": second["_chosen"],
        }

    def _fit_fallback(self, kind: str, fit: dict[str, Any], values: np.ndarray, y: np.ndarray,
                      groups: np.ndarray | None, blocks: dict[str, list[str]], block_of: np.ndarray,
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The linear map (coefficients on ``feature_names_in_``, 2 x n, and intercept) of the
        model that predicts a row whose sight point is missing, for a sight model or a blend;
        (None, None) for a one-stage model, or where the model lists no other block.

        A face whose line of sight could not be found (both eyes' rays off the eye or turned
        past :data:`.line_of_sight.MAX_EYE_TURN_DEG`: the landmarks and the head pose disagree)
        still has its eye features, which the one-stage model reads: a prediction from them
        errs less than the calibration targets' mean, the only other answer (~600 px on a
        laptop). The fallback is the one-stage model on the columns the model lists: a blend's
        own one-stage part; for a sight model, a one-stage model of its eye and appearance
        blocks (it lists no head block), fitted on the same rows with hyper-parameters by the
        same CV."""
        if kind == "blend":
            mask, one = fit["_parts"][1]
        elif kind == "sight":
            names = np.array([c for cols in blocks.values() for c in cols])
            used = self._blocks(names, "one-stage")
            if not any(used.values()):
                return None, None
            mask = np.isin(names, [c for cols in used.values() for c in cols])
            one = self._fit_kind("one-stage", values[:, mask], y, groups, used, block_of[mask])
        else:
            return None, None
        coef = np.zeros((2, values.shape[1]))
        coef[:, mask] = one["coef_"]
        return coef, np.asarray(one["intercept_"], dtype=np.float64)

    def _oof(self, fit: dict[str, Any], y: np.ndarray, folds: list, clip: float | None,
             clip_predictions: bool = True) -> np.ndarray:
        """Out-of-fold predictions of a fitted model with its chosen hyper-parameters: every
        stage (one, or the sight model's two) refitted on each fold's training rows, features and
        (``clip_predictions``) predictions clipped as :meth:`predict` does (``clip``; None: not
        at all). A blend's: the mean of its parts', clipped as one prediction (as :meth:`predict`
        clips the one linear map)."""
        if "_parts" in fit:
            pred = np.mean([self._oof(part, y, folds, clip, clip_predictions=False) for _, part in fit["_parts"]],
                           axis=0)
            if clip is not None and clip_predictions:
                for train, test in folds:
                    pred[test] = np.clip(pred[test], *_bounds(y[train], clip))
            return pred
        z = fit["_z"]
        pred = np.full_like(y, np.nan)
        for train, test in folds:
            zt = z[test] if clip is None else np.clip(z[test], *_bounds(z[train], clip))
            for k in range(2):
                cw1, a1 = fit["_chosen"][k]
                c1, b1 = _ridge(z[train] * cw1, y[train][:, [k]], a1)
                p = (zt * cw1) @ c1[0] + b1[0]
                if "_second" in fit:
                    cw2, a2 = fit["_second"][k]
                    r = y[train, k] - ((z[train] * cw1) @ c1[0] + b1[0])
                    c2, b2 = _ridge(z[train] * cw2, r[:, None], a2)
                    p = p + (zt * cw2) @ c2[0] + b2[0]
                if clip is not None and clip_predictions:
                    lo, hi = _bounds(y[train][:, [k]], clip)
                    p = np.clip(p, lo[0], hi[0])
                pred[test, k] = p
        return pred

    def _fit_arrays(self, values: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                    block_of: np.ndarray, candidates: list[dict[str, float]],
                    fold_on: np.ndarray | None = None) -> dict[str, Any]:
        """Standardise, choose among the block weight ``candidates`` and alpha (x and y apart) by
        CV, refit: the fitted attributes as a dict (plus ``_z``, ``_chosen``: what
        :meth:`_trim_errors` needs). ``fold_on``: the targets the folds keep together when ``y``
        is not them (a second stage fitted to residuals, every row of which differs)."""
        mean = values.mean(axis=0)
        scale = values.std(axis=0)
        app = block_of == "appearance"
        if app.any():  # one scale for all patch pixels (keeps their relative contrast, like WebGazer)
            scale[app] = np.sqrt(np.mean(scale[app] ** 2))
        scale = np.where(scale > 1e-9, scale, 1.0)
        z = (values - mean) / scale

        alphas = np.asarray(self.alphas, dtype=np.float64)
        folds = list(self._folds(y if fold_on is None else fold_on, groups))
        col_weights = [np.array([cand[b] for b in block_of]) for cand in candidates]
        # Out-of-fold predictions for every (block weights, alpha): (n_cand, n_alphas, n, 2).
        oof = np.stack([_oof_predictions(z * cw, y, folds, alphas, self.clip) for cw in col_weights])
        sq_err = ((oof - y) ** 2).mean(axis=2)  # (n_cand, n_alphas, 2)
        # x and y get their own hyper-parameters (e.g. lids and patches matter more for y).
        best = [np.unravel_index(np.argmin(sq_err[:, :, k]), sq_err.shape[:2]) for k in range(2)]
        chosen = np.stack([oof[ci, ai, :, k] for k, (ci, ai) in enumerate(best)], axis=1)
        coef = np.zeros((2, values.shape[1]))
        intercept = np.zeros(2)
        for k, (ci, ai) in enumerate(best):
            c, b = _ridge(z * col_weights[ci], y[:, [k]], alphas[ai])
            # Fold the standardisation and block weights into one linear map on raw features.
            coef[k] = c[0] * col_weights[ci] / scale
            intercept[k] = b[0] - coef[k] @ mean
        return {
            "mean_": mean, "scale_": scale, "coef_": coef, "intercept_": intercept,
            "sight_weight_": np.array([candidates[ci]["sight"] for ci, _ in best]),
            "eye_weight_": np.array([candidates[ci]["eye"] for ci, _ in best]),
            "head_weight_": np.array([candidates[ci]["head"] for ci, _ in best]),
            "appearance_weight_": np.array([candidates[ci]["appearance"] for ci, _ in best]),
            "alpha_": np.array([alphas[ai] for _, ai in best]),
            "cv_error_px_": float(np.linalg.norm(chosen - y, axis=1).mean()),
            "_chosen": [(col_weights[ci], alphas[ai]) for ci, ai in best],
            "_z": z,
        }

    def _trim_errors(self, fit: dict[str, Any], y: np.ndarray) -> np.ndarray:
        """Out-of-fold error of each row with the chosen hyper-parameters (every stage of the
        model refitted per fold), in robust standard deviations: sqrt(sum over x, y of (residual /
        (1.4826 MAD))^2). Folds keep each target's rows together (also when sessions are given:
        an outlier is a row the rest of its own calibration disagrees with, not a session that
        moved); unclipped: a row at the edge of the feature range is informative, not an outlier."""
        r = self._oof(fit, y, list(self._folds(y, None)), None) - y
        mad = 1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0)
        return np.linalg.norm((r - np.median(r, axis=0)) / np.maximum(mad, 1e-9), axis=1)

    def _block_weight_candidates(self, present: dict[str, bool]) -> list[dict[str, float]]:
        """Weight of each block per candidate of the one-stage model (no sight block); the eye
        block is the reference (weight 1)."""
        heads = list(self.head_weights) if present["head"] else [0.0]
        apps = list(self.appearance_weights) if present["appearance"] else [0.0]
        cands = [{"sight": 0.0, "eye": 1.0, "head": h, "appearance": a} for h in heads for a in apps]
        if not present["eye"]:  # without eye geometry, some other block must carry the signal
            cands = [c for c in cands if c["head"] > 0 or c["appearance"] > 0] or [
                {"sight": 0.0, "eye": 1.0, "head": 1.0, "appearance": 1.0}]
        return cands

    def _folds(self, y: np.ndarray, groups: np.ndarray | None):
        n = len(y)
        if groups is not None and len(np.unique(groups)) >= 2:
            return LeaveOneGroupOut().split(np.zeros(n), groups=groups)
        if self.group_targets:
            # each target's rows in one fold; with one row a target, folds of rows. Targets are
            # numbered in sorted order, so the folds do not depend on the order of the rows.
            _, target_id = np.unique(y, axis=0, return_inverse=True)
            n_targets = int(target_id.max()) + 1
            if n_targets >= 2:
                k = max(2, min(self.cv, n_targets if n_targets < n else n // 2))
                return GroupKFold(k, shuffle=True, random_state=0).split(np.zeros(n), groups=target_id.ravel())
        k = max(2, min(self.cv, n // 2))
        return KFold(k, shuffle=True, random_state=0).split(np.zeros(n))

    # ------------------------------------------------------------------ predict
    def predict(self, X: Any) -> np.ndarray:
        """Gaze (n x 2 px) for feature rows; NaN (or the target mean) where features are missing."""
        return self.predict_array(self._values(X))

    def predictable(self, X: Any) -> np.ndarray:
        """Which feature rows the model can predict (bool, n): those :meth:`predict` does not give
        NaN, or with ``fill_missing`` the calibration targets' mean (a feature it gives weight is
        missing, and for a sight model or a blend one its fallback gives weight too: a row
        without a face)."""
        return np.isfinite(self._map(self._values(X))).all(axis=1)

    def by_fallback(self, X: Any) -> np.ndarray:
        """Which feature rows the fallback predicts (bool, n): those whose sight point (or another
        feature the model gives weight) is missing, while those of its fallback are there
        (:meth:`_fit_fallback`; none for a one-stage model)."""
        values = self._values(X)
        return np.isfinite(self._map(values)).all(axis=1) & ~np.isfinite(self._map(values, False)).all(axis=1)

    def _values(self, X: Any) -> np.ndarray:
        """The raw feature matrix (columns ``feature_names_in_``) of feature rows ``X``."""
        check_is_fitted(self, "coef_")
        frame = _as_frame(X)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise ValueError(f"feature columns missing for prediction: {missing[:5]}")
        return frame[list(self.feature_names_in_)].to_numpy(dtype=np.float64)

    def _used(self, fallback: bool = False) -> tuple[np.ndarray, tuple[str, ...], Any, np.ndarray, np.ndarray,
                                                       np.ndarray] | None:
        """The columns the model (or its fallback; None where it has none) gives weight (a block
        left out, or the other part's, gives none): (their indices, names, a getter of them from
        a row, coefficients (k x 2), feature bounds). Cached per fitted model: a tracker predicts
        every sample with it."""
        coef = getattr(self, "fallback_coef_", None) if fallback else self.coef_
        if coef is None:
            return None
        key = (coef, self.feature_names_in_, self.feature_min_, self.feature_max_)
        caches = self.__dict__.setdefault("_used_cache", {})
        cache = caches.get(fallback)
        if cache is None or any(a is not b for a, b in zip(cache[0], key)):
            idx = np.flatnonzero((coef != 0).any(axis=0))
            names = tuple(str(c) for c in self.feature_names_in_[idx])
            getter = (operator.itemgetter(*names) if len(names) > 1
                      else (lambda row, n=names: tuple(row[c] for c in n)))
            cache = (key, (idx, names, getter, np.ascontiguousarray(coef[:, idx].T), self.feature_min_[idx],
                           self.feature_max_[idx]))
            caches[fallback] = cache
        return cache[1]

    def _finish(self, pred: np.ndarray) -> np.ndarray:
        pred = np.clip(pred, self.target_min_, self.target_max_)
        bad = ~np.isfinite(pred).all(axis=1)
        pred[bad] = self.target_mean_ if self.fill_missing else np.nan
        return pred

    def _map(self, values: np.ndarray, fallback: bool = True) -> np.ndarray:
        """The linear map on the used columns of ``values`` (clipped to their calibration range);
        where one of them is missing, the fallback's (``fallback``, where the model has one), else
        NaN."""
        idx, _, _, coef, lo, hi = self._used()
        pred = np.clip(values[:, idx], lo, hi) @ coef + self.intercept_
        other = self._used(True) if fallback else None
        if other is not None:
            bad = ~np.isfinite(pred).all(axis=1)
            if bad.any():
                fidx, _, _, fcoef, flo, fhi = other
                pred[bad] = np.clip(values[np.ix_(bad, fidx)], flo, fhi) @ fcoef + self.fallback_intercept_
        return pred

    def predict_array(self, values: np.ndarray) -> np.ndarray:
        """Gaze (n x 2) for a raw feature matrix whose columns are ``feature_names_in_``. A missing
        value in a column the model gives no weight (a block left out) does not matter."""
        return self._finish(self._map(values))

    def predict_row(self, row: Mapping[str, float]) -> tuple[float, float]:
        """Gaze for one tracker row (dict): :meth:`predict_rows` of that row alone."""
        x, y = self.predict_rows([row])[0].tolist()
        return x, y

    def predict_rows(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Gaze (n x 2) for tracker rows (dicts; a batch of a participant's samples); NaN where
        a feature is missing (and one its fallback needs). The same numbers as
        :meth:`predict_array`, reading only the columns used, and the rows' values into one
        matrix: one product for the batch (15 rows: ~0.011 ms a row, one at a time ~0.035)."""
        check_is_fitted(self, "coef_")
        if not rows:
            return np.empty((0, 2))
        pred = self._rows_map(rows, self._used(), self.intercept_)
        bad = np.flatnonzero(~np.isfinite(pred).all(axis=1))
        if len(bad):
            other = self._used(True)
            if other is not None:
                pred[bad] = self._rows_map([rows[i] for i in bad], other, self.fallback_intercept_)
        return self._finish(pred)

    @staticmethod
    def _rows_map(rows: Sequence[Mapping[str, float]], used: tuple, intercept: np.ndarray) -> np.ndarray:
        _, names, getter, coef, lo, hi = used
        try:  # a tracker's rows have every column: one C-level lookup of all of them a row
            got = [getter(r) for r in rows]
        except KeyError:
            got = [[r.get(c, np.nan) for c in names] for r in rows]
        values = np.array(got, dtype=np.float64).reshape(len(rows), len(names))
        return np.clip(values, lo, hi) @ coef + intercept

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {
            "format": FORMAT,
            "params": {k: (list(v) if isinstance(v, (tuple, list, np.ndarray)) else v)
                       for k, v in self.get_params().items()},
            "feature_names": [str(c) for c in self.feature_names_in_],
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "target_mean": self.target_mean_.tolist(),
            # bounds are infinite without clipping; JSON has no infinity, so those become null
            **{key: [float(v) if np.isfinite(v) else None for v in getattr(self, key + "_")]
               for key in _BOUNDS},
            "alpha": self.alpha_.tolist(),
            "kind": self.model_kind_,
            "correction_alpha": [float(v) if np.isfinite(v) else None for v in self.correction_alpha_],
            "sight_weight": self.sight_weight_.tolist(),
            "eye_weight": self.eye_weight_.tolist(),
            "head_weight": self.head_weight_.tolist(),
            "appearance_weight": self.appearance_weight_.tolist(),
            "cv_error_px": self.cv_error_px_,
            # the model for rows without a sight point (:meth:`_fit_fallback`); null: none
            "fallback_coef": None if self.fallback_coef_ is None else self.fallback_coef_.tolist(),
            "fallback_intercept": None if self.fallback_intercept_ is None else self.fallback_intercept_.tolist(),
            "n_samples": self.n_samples_fit_,
            "n_blinks_rejected": self.n_blinks_rejected_,
            "n_outliers_rejected": self.n_outliers_rejected_,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GazeCalibration:
        """The model :meth:`to_dict` gave; ValueError ("not a gaze calibration: ...") for anything
        else: another format, a key missing, a value of the wrong kind or shape."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"not a gaze calibration (format {found!r}, expected {FORMAT!r})")
        try:
            model = cls._from_dict(d)
        except KeyError as e:
            raise ValueError(f"not a gaze calibration: no {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a gaze calibration: {e}") from None
        n, shapes = model.n_features_in_, {"mean_": 1, "scale_": 1, "coef_": 2, "feature_min_": 1, "feature_max_": 1}
        for attr, rows in shapes.items():
            want = (n,) if rows == 1 else (2, n)
            if getattr(model, attr).shape != want:
                raise ValueError(f"not a gaze calibration: {attr.rstrip('_')} has shape "
                                 f"{getattr(model, attr).shape}, not {want} for its {n} features")
        if model.fallback_coef_ is not None and (model.fallback_coef_.shape != (2, n)
                                                 or model.fallback_intercept_.shape != (2,)):
            raise ValueError(f"not a gaze calibration: fallback_coef has shape {model.fallback_coef_.shape}, "
                             f"fallback_intercept {model.fallback_intercept_.shape}")
        for attr in ("intercept_", "target_mean_", "target_min_", "target_max_", "alpha_", "head_weight_",
                     "appearance_weight_", "sight_weight_", "eye_weight_"):
            if getattr(model, attr).shape != (2,):
                raise ValueError(f"not a gaze calibration: {attr.rstrip('_')} must hold x and y")
        linear = [model.mean_, model.scale_, model.coef_, model.intercept_, model.target_mean_]
        if model.fallback_coef_ is not None:
            linear += [model.fallback_coef_, model.fallback_intercept_]
        if not all(np.isfinite(a).all() for a in linear):
            raise ValueError("not a gaze calibration: a coefficient, mean or scale is not a finite number")
        return model

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> GazeCalibration:
        if not isinstance(d["params"], Mapping):
            raise TypeError("params must be an object")
        model = cls(**{**_LEGACY_PARAMS, **d["params"]})
        model.feature_names_in_ = np.array(d["feature_names"], dtype=object)
        model.n_features_in_ = len(d["feature_names"])
        for attr, key in (("mean_", "mean"), ("scale_", "scale"), ("coef_", "coef"),
                          ("intercept_", "intercept"), ("target_mean_", "target_mean")):
            setattr(model, attr, np.asarray(d[key], dtype=np.float64))
        for key in _BOUNDS:
            inf = np.inf if key.endswith("max") else -np.inf
            setattr(model, key + "_", np.array([inf if v is None else v for v in d[key]], dtype=np.float64))
        model.alpha_ = np.asarray(d["alpha"], dtype=np.float64)
        model.model_kind_ = str(d.get("kind", "one-stage"))
        model.correction_alpha_ = np.asarray([np.nan if v is None else v for v in d.get("correction_alpha", [None, None])],
                                             dtype=np.float64)
        model.sight_weight_ = np.asarray(d.get("sight_weight", [0.0, 0.0]), dtype=np.float64)
        model.eye_weight_ = np.asarray(d.get("eye_weight", [1.0, 1.0]), dtype=np.float64)
        model.head_weight_ = np.asarray(d["head_weight"], dtype=np.float64)
        model.appearance_weight_ = np.asarray(d["appearance_weight"], dtype=np.float64)
        model.cv_error_px_ = float(d["cv_error_px"])
        fallback = d.get("fallback_coef")  # (saved before fallbacks existed: none)
        model.fallback_coef_ = None if fallback is None else np.asarray(fallback, dtype=np.float64)
        model.fallback_intercept_ = (None if fallback is None
                                     else np.asarray(d["fallback_intercept"], dtype=np.float64))
        model.n_samples_fit_ = int(d["n_samples"])
        model.n_blinks_rejected_ = int(d.get("n_blinks_rejected", 0))
        model.n_outliers_rejected_ = int(d.get("n_outliers_rejected", 0))
        return model

    def to_bytes(self) -> bytes:
        """JSON (UTF-8) for ``store.Calibration.model``."""
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> GazeCalibration:
        try:
            d = json.loads(data.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"not a gaze calibration: {e}") from None
        return cls.from_dict(d)


def blink_rows(frame: pd.DataFrame, ratio: float | None) -> np.ndarray:
    """Rows of ``frame`` whose mean eye openness (``eye_*_open``, the eye aspect ratio) is below
    ``ratio`` x the median over the rows with one (False everywhere when ``ratio`` is None or
    no openness is known). Relative to this person's own median because the open-eye ratio
    differs between people and camera angles (~0.2-0.4); a blink drops it to a few hundredths."""
    cols = [c for c in OPEN_COLUMNS if c in frame.columns]
    out = np.zeros(len(frame), bool)
    if ratio is None or not cols:
        return out
    a = frame[cols].to_numpy(dtype=np.float64)
    finite = np.isfinite(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        openness = np.where(finite, a, 0.0).sum(axis=1) / finite.sum(axis=1)
    known = np.isfinite(openness)
    if not known.any():
        return out
    median = float(np.median(openness[known]))
    if median <= 0 or openness[known].min() < 0:  # not an eye aspect ratio (a ratio of distances)
        return out
    out[known] = openness[known] < ratio * median
    return out


def _bounds(a: np.ndarray, margin: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column [min, max] of ``a`` widened by ``margin`` x range (infinite when None)."""
    if margin is None:
        inf = np.full(a.shape[1], np.inf)
        return -inf, inf
    lo, hi = a.min(axis=0), a.max(axis=0)
    pad = margin * (hi - lo)
    return lo - pad, hi + pad


def _oof_predictions(z: np.ndarray, y: np.ndarray, folds: list, alphas: np.ndarray,
                     clip: float | None) -> np.ndarray:
    """Out-of-fold ridge predictions for every alpha: (n_alphas, n, 2), via one SVD per fold,
    with the features and predictions clipped as :meth:`GazeCalibration.predict` does."""
    out = np.full((len(alphas), len(z), y.shape[1]), np.nan)
    for train, test in folds:
        zt, yt = z[train], y[train]
        zm, ym = zt.mean(axis=0), yt.mean(axis=0)
        u, sv, vt = np.linalg.svd(zt - zm, full_matrices=False)
        uty = u.T @ (yt - ym)  # (r, 2)
        ztest = (np.clip(z[test], *_bounds(zt, clip)) - zm) @ vt.T  # (m, r)
        ylo, yhi = _bounds(yt, clip)
        for i, a in enumerate(alphas):
            out[i, test] = np.clip(ztest @ (uty * (sv / (sv ** 2 + a))[:, None]) + ym, ylo, yhi)
    return out


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept: (coef (k x d), intercept (k,)) for y (n x k)."""
    zm, ym = z.mean(axis=0), y.mean(axis=0)
    zc, yc = z - zm, y - ym
    n, d = zc.shape
    if d <= n:
        coef = np.linalg.solve(zc.T @ zc + alpha * np.eye(d), zc.T @ yc).T
    else:  # dual form: fewer samples than features (eye patches)
        coef = (zc.T @ np.linalg.solve(zc @ zc.T + alpha * np.eye(n), yc)).T
    return coef, ym - coef @ zm


# ---------------------------------------------------------------------- targets


def target_grid(n_points: int, width: float, height: float, margin: float = 0.1) -> list[tuple[float, float]]:
    """Calibration/validation targets in px for a ``width`` x ``height`` viewport.

    5: centre and the four corners; 9: a 3x3 grid; 13: the 3x3 grid plus the centres of its four
    quadrants (jsPsych's layouts). ``margin``: fraction of each side kept free at the edges.
    """
    lo, mid, hi = margin, 0.5, 1 - margin
    q1, q3 = (lo + mid) / 2, (mid + hi) / 2
    grid9 = [(fx, fy) for fy in (lo, mid, hi) for fx in (lo, mid, hi)]
    layouts = {
        5: [(mid, mid), (lo, lo), (hi, lo), (lo, hi), (hi, hi)],
        9: grid9,
        13: grid9 + [(q1, q1), (q3, q1), (q1, q3), (q3, q3)],
    }
    if n_points not in layouts:
        raise ValueError(f"target grids have 5, 9 or 13 points, not {n_points}")
    return [(fx * width, fy * height) for fx, fy in layouts[n_points]]


# ---------------------------------------------------------------------- drift


#: clicks in a row a corrector turns away before it asks whether the participant moved
#: (:class:`TurnedAway`)
REACQUIRE_CLICKS = 3
#: the calibration samples that may show a move (:class:`TurnedAway`): clicks only. The caret
#: while typing is sampled once a second along one line of text, so its samples agree with each
#: other whatever the eyes do (a participant typing while reading the answers would be re-mapped
#: onto the text field); a caret sample counts only where it agrees with the current correction.
REACQUIRE_EVENTS = ("click",)


class TurnedAway:
    """The clicks a corrector turned away (farther than its ``max_offset_px`` from the corrected
    gaze), kept to tell a participant who moved from clicks made without looking.

    A click made without looking lands anywhere on the page relative to the gaze, so the
    residuals (click - corrected gaze) of such clicks scatter over hundreds of px; after a move
    (the head shifted, the estimate jumped) they agree, off by the same new offset. So when the
    last ``n`` clicks were all turned away and all lie within ``agree_px`` of their median, the
    corrector starts again from them. (Three residuals of clicks made without looking, click and
    gaze anywhere on a 1600 x 900 page, fall within 125 px of their median in 0.07 % of cases,
    by simulation.) Without this, an offset beyond ``max_offset_px`` (a jump, or for
    :class:`DriftCorrector` any offset that large) could never be corrected: every click that
    shows it would be turned away.
    """

    def __init__(self, n: int = REACQUIRE_CLICKS, agree_px: float = 125.0) -> None:
        self.n, self.agree_px = n, agree_px
        self._items: deque[tuple[tuple[float, float], tuple[float, float], Any]] = deque(maxlen=max(n, 1))

    def clear(self) -> None:
        """A click was taken: the run of turned-away clicks is broken."""
        self._items.clear()

    def add(self, residual: Sequence[float], item: Any, click_xy: Sequence[float]) -> list[Any] | None:
        """Record a turned-away click (its ``residual``, what the corrector needs of it and where
        it was, ``click_xy``); the items of the last ``n`` when they agree and their clicks lie at
        least ``2 * agree_px`` apart (the corrector restarts from them), else None.

        Clicks on one spot agree whatever the eyes do (the message box clicked three times while
        the participant reads an answer: three residuals alike, the gaze never near), so they show
        no move; clicks at places apart agree only where the estimate followed them, off by one
        offset. (Before 07 Dec 2026 three clicks on one spot restarted a correction: a walk-through
        moved the whole map ~500 px onto the message box that way.)"""
        if self.n < 1:
            return None
        self._items.append(((float(residual[0]), float(residual[1])), (float(click_xy[0]), float(click_xy[1])), item))
        if len(self._items) < self.n:
            return None
        r = np.array([a for a, _, _ in self._items])
        if (np.hypot(*(r - np.median(r, axis=0)).T) > self.agree_px).any():
            return None
        c = np.array([w for _, w, _ in self._items])
        if not np.hypot(*(c[:, None, :] - c[None, :, :]).transpose(2, 0, 1)).max() >= 2 * self.agree_px:
            return None
        items = [b for _, _, b in self._items]
        self._items.clear()
        return items


class DriftCorrector:
    """Offset correction from clicks during a task.

    A click is assumed to land where the participant looks: each click adds the difference
    ``click - gaze`` (gaze just before the click); the correction is the median of the last
    ``window`` differences, ignoring a click whose difference lies more than ``max_offset_px``
    from the current correction (a click made without looking) unless the last clicks were all
    ignored and agree (:class:`TurnedAway`: the participant moved; the correction restarts from
    them).

    Each axis's median is shrunk towards 0 by its own standard error (``se`` = 1.2533 x the
    differences' spread, 1.4826 x MAD, / sqrt(n); the median ``m`` becomes ``m (1 - se^2 /
    m^2)``, 0 where ``|m| <= se``): a click's difference is mostly the picture-to-picture spread
    of the gaze estimate, not the offset, and the plain median of a few of them added more error
    than it took away. One difference, or equal ones, show no spread: they are taken as they are
    (as before). Synthetic people (``benchmarks/drift_correction.py``: 6 x 4 sittings, calibrated
    on one, another predicted; each click paired with the median of 5 of its dot's pictures),
    mean error in px, uncorrected / the plain median of the last 5 (before 08 Dec 2026) / this:
    sight model 203.5 / 223.7 / 223.7 after 1 click (the same), 210.5 / 205.9 after 3, 208.0 /
    203.8 after 10, 207.6 / 197.9 after 30; blend 223.9 / 237.4 / 237.4, 223.0 / 220.0, 213.8 /
    209.6, 217.3 / 204.9. (A first click still costs on average: ``interaction_calibration``, the
    default, is the better correction.)
    """

    def __init__(self, window: int = 20, max_offset_px: float = 250.0, reacquire: int = REACQUIRE_CLICKS) -> None:
        self.window = window
        self.max_offset_px = max_offset_px
        self.reacquire = reacquire
        self._diffs: deque[tuple[float, float]] = deque(maxlen=window)
        self._turned_away = TurnedAway(reacquire, max_offset_px / 2)

    def add_click(self, gaze_xy: Sequence[float], click_xy: Sequence[float], t_ms: float = float("nan"),
                  quality: float = 1.0, kind: str = "click") -> int:
        """Record one click; returns how many clicks it made count (0: ignored; more than 1 when
        the correction restarts from clicks it had ignored). ``kind``: the event (``click`` or
        ``caret``; only :data:`REACQUIRE_EVENTS` can restart the correction). ``t_ms``,
        ``quality``: not used here, the interface of :class:`InteractionRecalibrator`."""
        dx, dy = click_xy[0] - gaze_xy[0], click_xy[1] - gaze_xy[1]
        if not (np.isfinite(dx) and np.isfinite(dy)):
            return 0
        ox, oy = self.offset
        if np.hypot(dx - ox, dy - oy) > self.max_offset_px:
            if kind not in REACQUIRE_EVENTS:
                return 0
            moved = self._turned_away.add((dx, dy), (float(dx), float(dy)), click_xy)
            if moved is None:
                return 0
            self._diffs.clear()
            self._diffs.extend(moved)
            return len(moved)
        self._turned_away.clear()
        self._diffs.append((float(dx), float(dy)))
        return 1

    @property
    def offset(self) -> tuple[float, float]:
        if not self._diffs:
            return 0.0, 0.0
        d = np.array(self._diffs)
        m = np.median(d, axis=0)
        se2 = (1.2533 * 1.4826 * np.median(np.abs(d - m), axis=0)) ** 2 / len(d)
        shrink = np.divide(se2, m * m, out=np.zeros(2), where=m != 0.0)
        m = m * np.maximum(0.0, 1.0 - shrink)
        return float(m[0]), float(m[1])

    def apply(self, xy: np.ndarray | Sequence[float]) -> np.ndarray:
        """Corrected gaze: ``xy`` (2,) or (n x 2) plus the current offset."""
        return np.asarray(xy, dtype=np.float64) + np.array(self.offset)


#: gaze samples this long before a click are where the eyes were when clicking (the target)
CLICK_WINDOW_MS = 400.0
#: the ``events`` rows that are calibration samples: clicks (on buttons, fields, text) and the
#: caret while typing (the page records its position at most once a second)
CALIBRATION_EVENTS = ("click", "caret")
#: click targets (the page's ``data-target``) that never feed a correction: the rating and choice
#: controls. Calibrating on them would move later gaze toward the option chosen, a channel from
#: the preference into the gaze features.
EXCLUDED_CLICK_TARGETS = ("controls",)
#: the target the page gives a click or caret row made in a window that was not recording while
#: another window of the participant recorded the gaze (telemetry.js ``setActive``): its position
#: is in that other window's viewport, not where the recorded gaze looked
NOT_RECORDING_TARGETS = ("other-window",)


#: what became of a click or caret row in a replay (:meth:`ClickCalibration.log_rows`): taken into
#: the correction; the correction restarted from it; one of the agreeing clicks ignored before such
#: a restart; more than the gate from the correction (a click made without looking); its gaze
#: samples had no confidence; the same look as the row before it (:data:`REPEAT_MS`); no gaze
#: sample in the window before it; gaze samples there, none usable (no face, a blink, the
#: calibration failed: gaze left uncalibrated); none after it; on the rating and choice controls;
#: in a window that was not recording; a click without a point (keyboard); a position no screen
#: has (:func:`on_screen`)
INTERACTION_OUTCOMES = ("used", "restart (N agreeing)", "used (restart)", "ignored: far from the gaze",
                        "ignored: no usable picture", "ignored: repeats the one before it", "no gaze before it",
                        "no usable gaze before it", "after the last gaze sample",
                        "excluded: rating or choice controls", "excluded: a window not recording", "no position",
                        "off the screen")

#: a click or caret row within this long after the one before it (ms) and within
#: :data:`REPEAT_PX` of it is the same look, not another sample: a double or triple click, the
#: caret of the click's first keystroke, a button pressed again and again. Their gaze windows
#: (:data:`CLICK_WINDOW_MS`) overlap or nearly, so as samples they would repeat one pairing: a
#: walk-through's 15 clicks on the message box in 1.7 s filled half of the recalibrator's window
#: with one spot
REPEAT_MS = 1000.0
REPEAT_PX = 40.0


#: a viewport position (px) beyond this, or below 0, is not on any screen (the site takes
#: viewports up to the same size): no one looked there, whatever a page (or a forged batch) says
MAX_SCREEN_PX = 16384.0


def _finite_point(x: float | None, y: float | None) -> bool:
    return x is not None and y is not None and math.isfinite(x) and math.isfinite(y)


def on_screen(x: float | None, y: float | None) -> bool:
    """Whether (``x``, ``y``) is a viewport position a person can look at: finite, within 0 and
    :data:`MAX_SCREEN_PX`."""
    return _finite_point(x, y) and 0.0 <= x <= MAX_SCREEN_PX and 0.0 <= y <= MAX_SCREEN_PX


def is_calibration_event(kind: str | None, target: str | None, x: float | None, y: float | None) -> bool:
    """Whether an ``events`` row is a calibration sample: a click or caret position
    (:data:`CALIBRATION_EVENTS`) on the screen (:func:`on_screen`: a click row stored with a
    position no screen has would otherwise move the correction there), not on the rating and
    choice controls (:data:`EXCLUDED_CLICK_TARGETS`) nor in a window that was not recording
    (:data:`NOT_RECORDING_TARGETS`). A click at exactly (0, 0) is left out too: pages
    before keyboard clicks were recorded without a position stored a button pressed with Enter or
    Space there (the top-left corner, not where the participant looked)."""
    if kind not in CALIBRATION_EVENTS or target in EXCLUDED_CLICK_TARGETS or target in NOT_RECORDING_TARGETS:
        return False
    return on_screen(x, y) and not (kind == "click" and x == 0 and y == 0)


#: gaze samples that cannot pair with a click
CLICK_UNUSABLE = GazeFlag.NO_FACE | GazeFlag.BLINK | GazeFlag.UNCALIBRATED | GazeFlag.DROPPED | GazeFlag.MULTIPLE_FACES


class InteractionRecalibrator:
    """Continuous calibration from interactions: clicks (or other points the participant looks at,
    with known positions) refit a correction of the calibrated gaze during the session.

    The error is affine: the estimate of a point ``c`` the participant looks at is
    ``gaze = c + b + E (c - m) / scale_px`` (``m``: the clicks' weighted centre), fitted by weighted
    least squares on the last ``window`` samples, and the correction inverts it,
    ``corrected = m + A^-1 (gaze - m - b)`` with ``A = I + E / scale_px``. Each sample's weight is
    its quality (the gaze samples' confidence, 0-1) times ``0.5 ** (age / half_life_ms)`` (age:
    time before the newest sample), so the correction follows the participant as they move. The
    offset ``b`` is unpenalised; ``E`` (scale and shear of the error, 4 numbers) gets a ridge
    penalty ``ridge`` (in units of weight x (scale_px)^2) toward 0, so clicks in one place give a
    plain offset (as :class:`DriftCorrector`) and only clicks spread over the screen tilt or
    stretch the map; ``A``'s scales are kept within ``1 / max_scale`` and ``max_scale``, and a fit
    that would mirror the map (``det A <= 0``: the estimate moving against the clicks) keeps the
    offset alone. Why not
    refit the whole ridge model: it has ~150 features, and a handful of clicks would either be
    swamped by the calibration data or fit noise; 6 numbers on its output are what a few clicks
    can determine (drift of the head position and distance shows up as an offset and a scale
    change of the estimate).

    Why the click is the regressor: the click's position is known to a few px, the estimate is
    noisy (tens to hundreds of px a sample). Regressing ``click - gaze`` on the noisy gaze (as
    before 07 Dec 2026) is an errors-in-variables fit: the noise pulls the fitted scale toward
    shrinking the map onto the clicks (with the clicks in one corner and 120 px of noise, a
    perfect calibration came out ~175 px off after 30 clicks: the map at 0.68 of its size). With
    the click as the regressor the noise stays in the response and the fit is unbiased.

    A sample farther than ``max_offset_px`` from the current corrected gaze is ignored (a click
    made without looking), unless the last ``reacquire`` samples were all ignored and agree
    (:class:`TurnedAway`: the participant moved); then the correction restarts from them.
    ``apply`` on no samples returns the gaze unchanged.
    """

    def __init__(self, window: int = 30, half_life_ms: float = 60_000.0, ridge: float = 2.0,
                 scale_px: float = 500.0, max_offset_px: float = 250.0, reacquire: int = REACQUIRE_CLICKS,
                 max_scale: float = 1.5) -> None:
        self.window = window
        self.half_life_ms = half_life_ms
        self.ridge = ridge
        self.scale_px = scale_px
        self.max_offset_px = max_offset_px
        self.reacquire = reacquire
        self.max_scale = max_scale
        self._samples: deque[tuple[float, float, float, float, float, float]] = deque(maxlen=window)
        self._fit = (np.zeros(2), np.eye(2), np.zeros(2))  # correction offset (-b), A^-1, centre m
        self._turned_away = TurnedAway(reacquire, max_offset_px / 2)

    @property
    def n_samples(self) -> int:
        return len(self._samples)

    def add_click(self, gaze_xy: Sequence[float], click_xy: Sequence[float], t_ms: float = float("nan"),
                  quality: float = 1.0, kind: str = "click") -> int:
        """Record one sample (the gaze just before the click, the click, its time, the gaze's
        quality 0-1, the event: ``click`` or ``caret``, only :data:`REACQUIRE_EVENTS` can restart
        the correction); returns how many samples it made count (0: ignored; more than 1 when the
        correction restarts from samples it had ignored)."""
        g = np.asarray(gaze_xy, dtype=np.float64)
        c = np.asarray(click_xy, dtype=np.float64)
        if not (np.isfinite(g).all() and np.isfinite(c).all()) or not quality > 0:
            return 0
        t = float(t_ms) if np.isfinite(t_ms) else (self._samples[-1][4] if self._samples else 0.0)
        sample = (g[0], g[1], c[0], c[1], t, min(float(quality), 1.0))
        residual = c - self.apply(g)
        if np.hypot(*residual) > self.max_offset_px:
            if kind not in REACQUIRE_EVENTS:
                return 0
            moved = self._turned_away.add(residual, sample, c)
            if moved is None:
                return 0
            self._samples.clear()
            self._samples.extend(moved)
            self._refit()
            return len(moved)
        self._turned_away.clear()
        self._samples.append(sample)
        self._refit()
        return 1

    def _refit(self) -> None:
        a = np.array(self._samples)
        g, c, t, q = a[:, 0:2], a[:, 2:4], a[:, 4], a[:, 5]
        w = q * 0.5 ** ((t.max() - t) / self.half_life_ms)
        if w.sum() <= 0:
            return
        centre = (w[:, None] * c).sum(axis=0) / w.sum()
        err = g - c
        b = (w[:, None] * err).sum(axis=0) / w.sum()
        z = (c - centre) / self.scale_px
        zw = z * w[:, None]
        E = np.linalg.solve(z.T @ zw + self.ridge * np.eye(2), zw.T @ (err - b)).T
        if np.linalg.det(np.eye(2) + E / self.scale_px) <= 0:  # the estimate moving against the clicks
            E = np.zeros((2, 2))  # (a mirrored map is no correction: the offset alone)
        u, scales, vt = np.linalg.svd(np.eye(2) + E / self.scale_px)
        scales = np.clip(scales, 1.0 / self.max_scale, self.max_scale)
        self._fit = (-b, (vt.T / scales) @ u.T, centre)

    @property
    def offset(self) -> tuple[float, float]:
        """The correction at the centre of the samples (the offset part)."""
        return float(self._fit[0][0]), float(self._fit[0][1])

    def apply(self, xy: np.ndarray | Sequence[float]) -> np.ndarray:
        """Corrected gaze for ``xy`` (2,) or (n x 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        offset, inverse, centre = self._fit
        return centre + (xy - centre + offset) @ inverse.T


def click_corrector(interactions: bool) -> DriftCorrector | InteractionRecalibrator:
    """A study's corrector of the gaze from its clicks: continuous calibration
    (:class:`InteractionRecalibrator`, ``[gaze] interaction_calibration``) or an offset
    (:class:`DriftCorrector`, ``drift_correction``)."""
    return InteractionRecalibrator() if interactions else DriftCorrector()


class ClickCalibration:
    """A task's clicks and caret positions correcting its gaze in time order: the one
    implementation of the study site (live, a gaze batch at a time: :mod:`.capture_site.gaze_drift`)
    and of ``gazepref gaze recalibrate --interactions`` (a whole task at once:
    :func:`.gaze_recalibrate.replay_interactions`), so the two give the same rows.

    Each calibration event (:func:`is_calibration_event`) is taken when the first gaze sample at or
    after its time comes: it pairs with the median of the usable samples (uncorrected estimates)
    of the :data:`CLICK_WINDOW_MS` before it, weighted by their median confidence, and feeds
    ``corrector`` (:class:`DriftCorrector` or :class:`InteractionRecalibrator`; an event without
    usable samples in its window is dropped). A sample gets the correction of the events at or
    before its time, never a later one's, where the samples come in time order (a batch that
    reaches the site late gets the correction in force by then). Events later than every sample
    given so far wait in
    :attr:`pending` (the site: for the next batch). Times are in ms on one clock (the site: epoch
    ms; the replay: the task clock)."""

    def __init__(self, corrector: DriftCorrector | InteractionRecalibrator, log: bool = False) -> None:
        self.corrector = corrector
        self.pending: list[tuple[float, float, float, str]] = []  # (t, x, y, kind), by time
        self.used = 0  # events taken into the correction since the task began (a running count: a
        #               restart from three agreeing clicks, or the offset's window, drops older ones)
        #: with ``log``: what became of each click and caret row (:meth:`log_rows`; the replay's
        #: provenance, ``gazepref gaze recalibrate --interactions``); None: not kept (the site)
        self.log: list[dict[str, Any]] | None = [] if log else None
        self._last: tuple[float, float, float] | None = None  # the last look paired with the gaze (t, x, y)

    def add_events(self, t: Iterable[float], kind: Iterable[str | None], target: Iterable[str | None],
                   x: Iterable[float | None], y: Iterable[float | None]) -> None:
        """Queue the calibration events among these ``events`` rows (the others are left out)."""
        for when, k, tg, cx, cy in zip(t, kind, target, x, y):
            if is_calibration_event(k, tg, cx, cy):
                self.pending.append((float(when), float(cx), float(cy), str(k)))
            elif self.log is not None and k in CALIBRATION_EVENTS:
                outcome = ("excluded: rating or choice controls" if tg in EXCLUDED_CLICK_TARGETS else
                           "excluded: a window not recording" if tg in NOT_RECORDING_TARGETS else
                           "off the screen" if _finite_point(cx, cy) and (cx, cy) != (0, 0) else "no position")
                self._note(float(when), str(k), cx, cy, None, None, outcome)
        self.pending.sort(key=operator.itemgetter(0))

    def _note(self, t: float, kind: str, x: Any, y: Any, gaze: np.ndarray | None, quality: float | None,
              outcome: str) -> None:
        if self.log is not None:
            self.log.append({"t": t, "type": kind, "x": x, "y": y,
                             "gaze_x": None if gaze is None else float(gaze[0]),
                             "gaze_y": None if gaze is None else float(gaze[1]), "quality": quality,
                             "outcome": outcome})

    def _relabel_reacquired(self, n: int) -> None:
        """The correction restarted from the ``n`` clicks ignored just before this one (they
        agreed: the participant moved, :class:`TurnedAway`): they are used after all."""
        for row in reversed(self.log or []):
            if n == 0:
                break
            if row["type"] == "click" and row["outcome"] == "ignored: far from the gaze":
                row["outcome"] = "used (restart)"
                n -= 1

    def log_rows(self) -> list[dict[str, Any]]:
        """The log (``log=True``) in time order, the events still waiting for a gaze sample after
        theirs included (``after the last gaze sample``). Each row: the event's ``t``, ``type``
        (click, caret), ``x``/``y``, the median uncorrected gaze of the :data:`CLICK_WINDOW_MS`
        before it (``gaze_x``/``gaze_y``) and its ``quality`` (the samples' median confidence,
        the sample's weight before its age), and ``outcome``: :data:`INTERACTION_OUTCOMES`."""
        rows = list(self.log or [])
        rows += [{"t": t, "type": k, "x": x, "y": y, "gaze_x": None, "gaze_y": None, "quality": None,
                  "outcome": "after the last gaze sample"} for t, x, y, k in self.pending]
        return sorted(rows, key=operator.itemgetter("t"))

    def correct(self, t: np.ndarray, xy: np.ndarray, quality: np.ndarray, usable: np.ndarray,
                earlier: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Corrections of the samples at times ``t`` (n,) with uncorrected estimates ``xy`` (n x 2,
        NaN without one), ``quality`` (their confidence 0-1) and ``usable`` (bool: may pair with an
        event): (n x 3) of drift x, drift y (the corrected estimate is ``xy`` + these; a sample
        without an estimate gets the offset in force) and the events the correction rests on.
        ``earlier``: usable samples before these (times, n x 2 estimates, qualities), which the
        first events' windows reach back to (the site: the gaze stored before this batch)."""
        t = np.asarray(t, dtype=np.float64)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        out = np.zeros((len(t), 3))
        if not len(t):
            return out
        usable = np.asarray(usable, dtype=bool) & np.isfinite(xy).all(axis=1)
        pool_t, pool_xy, pool_q = t[usable], xy[usable], np.asarray(quality, dtype=np.float64)[usable]
        if earlier is not None and len(earlier[0]):
            pool_t = np.concatenate([np.asarray(earlier[0], np.float64), pool_t])
            pool_xy = np.concatenate([np.asarray(earlier[1], np.float64).reshape(-1, 2), pool_xy])
            pool_q = np.concatenate([np.asarray(earlier[2], np.float64), pool_q])
        by_time = np.argsort(pool_t, kind="stable")
        pool_t, pool_xy, pool_q = pool_t[by_time], pool_xy[by_time], pool_q[by_time]
        order = np.argsort(t, kind="stable")
        ts = t[order]
        start, taken = 0, 0
        for when, cx, cy, kind in self.pending:
            first = int(np.searchsorted(ts, when, side="left"))  # the first sample at or after it
            if first >= len(ts):
                break
            self._fill(out, order[start:first], xy)
            start = first
            taken += 1
            last = self._last
            if last is not None and abs(when - last[0]) < REPEAT_MS and math.hypot(cx - last[1], cy - last[2]) <= REPEAT_PX:
                self._last = (when, cx, cy)  # (a burst goes on: its next click is compared with this one)
                self._note(when, kind, cx, cy, None, None, "ignored: repeats the one before it")
                continue
            lo = int(np.searchsorted(pool_t, when - CLICK_WINDOW_MS, side="left"))
            hi = int(np.searchsorted(pool_t, when, side="right"))
            if hi > lo:
                self._last = (when, cx, cy)  # a look paired with the gaze (one without any is not one)
                gaze = np.median(pool_xy[lo:hi], axis=0)
                quality = float(np.median(pool_q[lo:hi]))
                n = self.corrector.add_click(gaze, (cx, cy), when, quality, kind=kind)
                self.used += n
                no_picture = isinstance(self.corrector, InteractionRecalibrator) and not quality > 0
                self._note(when, kind, cx, cy, gaze, quality,
                           "used" if n == 1 else f"restart ({n} agreeing)" if n > 1 else
                           "ignored: no usable picture" if no_picture else "ignored: far from the gaze")
                if n > 1:
                    self._relabel_reacquired(n - 1)
            else:
                seen = np.searchsorted(ts, when, side="right") > np.searchsorted(ts, when - CLICK_WINDOW_MS, side="left")
                self._note(when, kind, cx, cy, None, None, "no usable gaze before it" if seen else "no gaze before it")
        self._fill(out, order[start:], xy)
        del self.pending[:taken]
        return out

    def _fill(self, out: np.ndarray, rows: np.ndarray, xy: np.ndarray) -> None:
        if not len(rows):
            return
        est = xy[rows]
        finite = np.isfinite(est).all(axis=1)
        out[rows] = (*self.corrector.offset, self.used)
        if finite.any():
            out[rows[finite], :2] = self.corrector.apply(est[finite]) - est[finite]
