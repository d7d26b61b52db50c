"""Text feedback: is the user's *next* message naturally occurring feedback on the previous answer?

Categories (NoF, "naturally occurring feedback", after Don-Yehiya et al. 2024 / Petrak et al. 2023):

=================================  ================  ===========================
category                           sat               ordinal
=================================  ================  ===========================
``repeat_rephrase``                dissatisfied      1 rejection
``make_aware_without_correction``  dissatisfied      1 rejection
``make_aware_with_correction``     dissatisfied      2 correction
``ask_clarification``              neutral           3 neutral
``none``                           neutral           3 neutral, 4 engagement when
                                                     it builds on the answer
``positive``                       satisfied         5 satisfaction
=================================  ================  ===========================

See ``docs/text_feedback.md`` for the reasoning behind the mapping and the measured accuracy.

The offline classifier (:class:`TextFeedbackClassifier`) is a logistic-regression head over the
MiniLM sentence embedding of the next message, cosine similarities to the previous query and
response, and the lexical rule features of :mod:`gazepref.signals.text_feedback_rules`. Precision
comes first: a feedback category is only predicted when the message shows *evidence* for it (a cue
phrase, or for repeats a near-duplicate of the previous query); everything else is ``none``.
:func:`default_classifier` trains it once from the packaged ``data/feedback_train.jsonl`` and caches
it on disk; :func:`classify_feedback` is the one-call API for both backends.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..datasets.conversations import read_jsonl
from ..files import whole_file

# Sentence embeddings come from the project's one loader (gazepref.embeddings): the same text gets
# the same vector here and in the reward models' text features.
from ..embeddings import MAX_SEQ_LENGTH, embed, load_encoder  # noqa: F401  (re-exported)
from .text_feedback_rules import (
    RULE_FEATURES,
    builds_on_answer,
    normalize,
    read_pair,
    rule_features,
)

NONE = "none"
CATEGORIES = (
    "repeat_rephrase",
    "make_aware_with_correction",
    "make_aware_without_correction",
    "ask_clarification",
    "positive",
    NONE,
)
SAT = {
    "repeat_rephrase": "dissatisfied",
    "make_aware_with_correction": "dissatisfied",
    "make_aware_without_correction": "dissatisfied",
    "ask_clarification": "neutral",
    "positive": "satisfied",
    NONE: "neutral",
}
ORDINAL = {  # none is 3, or 4 when the message builds on the answer (see :func:`ordinal_for`)
    "repeat_rephrase": 1,
    "make_aware_without_correction": 1,
    "make_aware_with_correction": 2,
    "ask_clarification": 3,
    NONE: 3,
    "positive": 5,
}
ORDINAL_NAMES = {1: "rejection", 2: "correction", 3: "neutral", 4: "engagement", 5: "satisfaction"}
REQUIRED_KEYS = ("prev_query", "prev_response", "next_query")
# the most confidence a verdict on a message in another language gets (the rules read English; a
# few thanks and complaint words of other languages aside)
FOREIGN_MAX_CONFIDENCE = 0.5
MODEL_VERSION = "1"  # part of the on-disk cache key, with this module's and the rules' source


def ordinal_for(nof: str, engaged: bool = False) -> int:
    """The 5-level ordinal of a category; ``none`` that builds on the answer is 4 (engagement)."""
    if nof not in ORDINAL:
        raise ValueError(f"unknown feedback category {nof!r}; expected one of {CATEGORIES}")
    return 4 if nof == NONE and engaged else ORDINAL[nof]


def result_for(nof: str, confidence: float, engaged: bool = False) -> dict[str, Any]:
    """The per-message result: ``{nof, sat, ordinal, confidence}``."""
    return {
        "nof": nof,
        "sat": SAT[nof],
        "ordinal": ordinal_for(nof, engaged),
        "confidence": round(float(confidence), 4),
    }


# --- input records ------------------------------------------------------------------------------


def as_records(X: Any) -> list[dict[str, str]]:
    """Records with the three required keys from a list of dicts, a DataFrame, or triples."""
    if hasattr(X, "to_dict") and hasattr(X, "columns"):
        X = X.to_dict("records")
    out = []
    for i, r in enumerate(X):
        if isinstance(r, Mapping):
            missing = [k for k in REQUIRED_KEYS if k not in r]
            if missing:
                raise KeyError(f"record {i} lacks {', '.join(missing)}")
            out.append({k: "" if r[k] is None else str(r[k]) for k in REQUIRED_KEYS})
        else:
            pq, pr, nq = r
            out.append({"prev_query": str(pq or ""), "prev_response": str(pr or ""), "next_query": str(nq or "")})
    return out


def feature_matrix(records: Sequence[Mapping[str, str]], use_embedding: bool = True):
    """(dense features, embeddings of next, rule-feature dicts) for records."""
    recs = as_records(records)
    n = len(recs)
    # "thx u r great!!" as "thanks you are great!", "when did ww2 end" as "when did World War 2 end";
    # both read alike: a repeat stays a repeat
    pairs = [read_pair(r["prev_query"], r["next_query"]) for r in recs]
    nxt = embed([n for _, n in pairs])
    pq = embed([q for q, _ in pairs])
    pr = embed([r["prev_response"] for r in recs])
    rules = _rule_features(recs)
    cos_q = (nxt * pq).sum(1) if n else np.zeros(0)
    cos_r = (nxt * pr).sum(1) if n else np.zeros(0)
    dense = np.column_stack(
        [cos_q, cos_r, cos_q - cos_r] + [np.array([f[k] for f in rules], dtype=float) for k in RULE_FEATURES]
    ) if n else np.zeros((0, 3 + len(RULE_FEATURES)))
    return dense, (nxt if use_embedding else None), rules, cos_q


def _similar(a: str, b: str) -> float:
    """Cosine similarity of two short texts (a quoted answer value and the value stated after it;
    :func:`embed` keeps their vectors)."""
    va, vb = embed([normalize(a), normalize(b)])
    return float(va @ vb)


def _rule_features(recs: Sequence[Mapping[str, str]]) -> list[dict[str, float]]:
    """:func:`rule_features` of each record, with :func:`_similar`. The short texts the rules
    compare are embedded in one batch first: a pass that answers every comparison with 0 notes
    the texts asked about (the rules alone are quick), then the real pass finds their vectors
    kept (a text only the real pass asks about is embedded then). One call to the encoder per
    comparison took most of the time of fitting or applying the classifier."""
    asked: dict[str, None] = {}

    def noting(a: str, b: str) -> float:
        asked.update(dict.fromkeys((normalize(a), normalize(b))))
        return 0.0

    for r in recs:
        rule_features(r["prev_query"], r["prev_response"], r["next_query"], similar=noting)
    if asked:
        embed(list(asked))
    return [rule_features(r["prev_query"], r["prev_response"], r["next_query"], similar=_similar) for r in recs]


DENSE_FEATURES = ("cos_prev_query", "cos_prev_response", "cos_query_minus_response") + RULE_FEATURES


class TextFeedbackClassifier(ClassifierMixin, BaseEstimator):
    """NoF category of a next message: MiniLM embedding + similarities + rules, logistic head.

    Parameters
    ----------
    C : inverse regularisation strength of the logistic regression.
    embedding_weight : scale of the 384-d next-message embedding relative to the standardised
        dense features (0 drops it).
    flag_threshold : a message is flagged as feedback only when the (gated) probability of all
        feedback categories together is at least this; it then gets the most probable feedback
        category. Otherwise ``none``. Higher = fewer false flags.
    require_evidence : gate each feedback category on rule evidence (see :meth:`evidence`).
    rephrase_cos, rephrase_overlap, rephrase_cos_alone : a next message is evidence of a
        repeat/rephrase when it is a verbatim repeat, has a repeat cue ("I asked", "again"), or asks the
        same kind of question (same wh-type) with cosine similarity to the previous query at least
        ``rephrase_cos_alone``, or at least ``rephrase_cos`` with a word or character-trigram
        Jaccard overlap of at least ``rephrase_overlap``.
    class_weight : passed to the logistic regression.

    Learned attributes: ``classes_``, ``scaler_``, ``head_``, ``n_features_in_``.
    """

    def __init__(
        self,
        C: float = 1.0,
        embedding_weight: float = 0.5,
        flag_threshold: float = 0.5,
        require_evidence: bool = True,
        rephrase_cos: float = 0.78,
        rephrase_overlap: float = 0.5,
        rephrase_cos_alone: float = 0.88,
        class_weight: str | dict | None = "balanced",
    ):
        self.C = C
        self.embedding_weight = embedding_weight
        self.flag_threshold = flag_threshold
        self.require_evidence = require_evidence
        self.rephrase_cos = rephrase_cos
        self.rephrase_overlap = rephrase_overlap
        self.rephrase_cos_alone = rephrase_cos_alone
        self.class_weight = class_weight

    # features --------------------------------------------------------------------------------
    def _design(self, dense: np.ndarray, emb: np.ndarray | None, fit: bool) -> np.ndarray:
        from sklearn.preprocessing import StandardScaler

        if fit:
            self.scaler_ = StandardScaler().fit(dense)
        z = self.scaler_.transform(dense)
        if emb is not None and self.embedding_weight > 0:
            # unit-norm embedding over 384 dims: rescale so its total weight is comparable
            z = np.hstack([z, emb * self.embedding_weight * np.sqrt(emb.shape[1] / 8.0)])
        return z

    def evidence(self, rules: Sequence[Mapping[str, float]], cos_q: np.ndarray) -> np.ndarray:
        """Boolean (n, n_classes): which categories each message shows evidence for."""
        ev = np.zeros((len(rules), len(self.classes_)), dtype=bool)
        col = {c: i for i, c in enumerate(self.classes_)}
        for i, f in enumerate(rules):
            neg = f["cue_negative"] or f["cue_correction"]
            has = {
                NONE: True,
                "repeat_rephrase": bool(
                    f["exact_repeat"]
                    or f["cue_repeat"]
                    or f["typo_repeat"]
                    or (
                        f["same_question_type"]
                        # the same words the other way round ask something else ("5 km to miles")
                        and not f.get("swapped_direction", 0.0)
                        and (
                            cos_q[i] >= self.rephrase_cos_alone
                            or (
                                cos_q[i] >= self.rephrase_cos
                                and max(f["jaccard_query"], f["char_jaccard"]) >= self.rephrase_overlap
                            )
                        )
                    )
                ),
                # a fix, or a complaint in words; a pasted error alone says the code failed, not how
                # to fix it ("Traceback ...", "TypeError: ...")
                "make_aware_with_correction": bool(f["cue_correction"] or f.get("complaint_text", f["cue_negative"])),
                # a complaint outranks praise: "great, another wrong answer", "thanks, but that's wrong"
                "positive": bool(f["cue_positive"] and not neg),
                # an explicit fix ("..., not 2008", "you forgot X") rules out "without correction"
                "make_aware_without_correction": bool(f["cue_negative"] and not f["cue_correction"]),
                "ask_clarification": bool(f["cue_clarify"]),
            }
            for c, ok in has.items():
                if c in col:
                    ev[i, col[c]] = ok
        return ev

    # sklearn API -----------------------------------------------------------------------------
    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(list(y), dtype=object)
        unknown = set(y) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)}; expected {CATEGORIES}")
        dense, emb, _, _ = feature_matrix(X, use_embedding=self.embedding_weight > 0)
        Z = self._design(dense, emb, fit=True)
        self.head_ = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000)
        self.head_.fit(Z, y)
        self.classes_ = self.head_.classes_
        self.n_features_in_ = Z.shape[1]
        return self

    def _check_fitted(self):
        if not hasattr(self, "head_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("TextFeedbackClassifier is not fitted yet; call fit() or use default_classifier()")

    def _proba_and_details(self, X):
        self._check_fitted()
        recs = as_records(X)
        dense, emb, rules, cos_q = feature_matrix(recs, use_embedding=self.embedding_weight > 0)
        if not recs:
            return np.zeros((0, len(self.classes_))), recs, rules
        proba = self.head_.predict_proba(self._design(dense, emb, fit=False))
        i_none = list(self.classes_).index(NONE)
        if self.require_evidence:
            ev = self.evidence(rules, cos_q)
            # the two "make aware" classes are one complaint family: when only one of them has
            # evidence (an explicit fix rules out "without correction"), it takes the other's mass
            cls = list(self.classes_)
            if {"make_aware_with_correction", "make_aware_without_correction"} <= set(cls):
                i_with, i_without = cls.index("make_aware_with_correction"), cls.index("make_aware_without_correction")
                for a, b in ((i_with, i_without), (i_without, i_with)):
                    m = ev[:, a] & ~ev[:, b]
                    proba[m, a] += proba[m, b]
                    proba[m, b] = 0.0
            moved = np.where(ev, 0.0, proba).sum(1)
            proba = np.where(ev, proba, 0.0)
            proba[:, i_none] += moved
        # a verbatim repeat of the previous query is a repeat whatever the head says
        if "repeat_rephrase" in self.classes_:
            i_rep = list(self.classes_).index("repeat_rephrase")
            for i, f in enumerate(rules):
                if f["exact_repeat"] and proba[i, i_rep] < 0.95:
                    proba[i] *= 0.05 / max(1e-12, 1.0 - proba[i, i_rep])
                    proba[i, i_rep] = 0.95
        return proba, recs, rules

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order), after the evidence gate."""
        return self._proba_and_details(X)[0]

    def _decide(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i_none = list(self.classes_).index(NONE)
        pred = np.full(len(proba), i_none)
        conf = proba[:, i_none].copy() if len(proba) else np.zeros(0)
        for i, p in enumerate(proba):
            fb = p.copy()
            fb[i_none] = -1.0
            k = int(np.argmax(fb))
            if 1.0 - p[i_none] >= self.flag_threshold and p[k] > 0:
                pred[i], conf[i] = k, p[k]
            else:
                # none: how sure we are that no feedback category applies
                conf[i] = 1.0 - max((p[j] for j in range(len(p)) if j != i_none), default=0.0)
        return pred, conf

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        pred, _ = self._decide(proba)
        return self.classes_[pred] if len(pred) else np.array([], dtype=object)

    def classify(self, X) -> list[dict[str, Any]]:
        """Per record ``{nof, sat, ordinal, confidence}`` (ordinal 4 for engaged follow-ups)."""
        proba, recs, rules = self._proba_and_details(X)
        pred, conf = self._decide(proba) if len(recs) else (np.zeros(0, int), np.zeros(0))
        out = []
        for r, k, c, f in zip(recs, pred, conf, rules):
            nof = str(self.classes_[k])
            if f.get("foreign"):  # the cue patterns are English: whatever the verdict, it is a weak one
                c = min(c, FOREIGN_MAX_CONFIDENCE)
            engaged = nof == NONE and builds_on_answer(r["prev_query"], r["prev_response"], r["next_query"])
            out.append(result_for(nof, c, engaged))
        return out


# --- packaged data and the default model --------------------------------------------------------


def load_jsonl(name_or_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Lines of a JSONL file: a path, or the name of a packaged file (``feedback_train.jsonl``)."""
    p = Path(name_or_path)
    if not p.exists():
        p = Path(__file__).resolve().parent / "data" / str(name_or_path)
        if not p.exists():  # an installed package whose data lives elsewhere (zip, namespace)
            p = Path(str(resources.files("gazepref.signals") / "data" / str(name_or_path)))
    return read_jsonl(p)


def _cache_dir() -> Path:
    from ..settings import cache_dir

    return cache_dir("text_feedback")


def _fingerprint(rows: list[dict]) -> str:
    import sklearn

    h = hashlib.sha256()
    h.update(f"{MODEL_VERSION}|{sklearn.__version__}|minilm-{MAX_SEQ_LENGTH}|".encode())
    for name in ("text_feedback.py", "text_feedback_rules.py"):  # features and head code
        h.update(Path(__file__).with_name(name).read_bytes())
    h.update(json.dumps(rows, sort_keys=True).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def default_classifier() -> TextFeedbackClassifier:
    """The pre-trained classifier: fitted once on the packaged training set, cached on disk."""
    rows = load_jsonl("feedback_train.jsonl")
    path = _cache_dir() / f"classifier-{_fingerprint(rows)}.pkl"
    if path.exists():
        try:
            with path.open("rb") as f:
                clf = pickle.load(f)
            if isinstance(clf, TextFeedbackClassifier):
                return clf
        except Exception:  # a stale or broken cache file: retrain
            pass
    clf = TextFeedbackClassifier().fit(rows, [r["label"] for r in rows])
    try:
        with whole_file(path) as tmp, tmp.open("wb") as f:
            pickle.dump(clf, f)
    except OSError:  # read-only home: keep the in-memory model
        pass
    return clf


def classify_feedback(
    records: Iterable[Mapping[str, str]],
    backend: str = "offline",
    base_url: str | None = None,
    model: str | None = None,
    classifier: TextFeedbackClassifier | None = None,
) -> list[dict[str, Any]]:
    """Classify each record's ``next_query`` as feedback on ``prev_response``.

    ``backend="offline"`` uses :func:`default_classifier` (or ``classifier``); ``backend="llm"``
    asks an OpenAI-compatible chat endpoint (:class:`gazepref.signals.feedback_llm.LLMJudge`).
    Returns one ``{nof, sat, ordinal, confidence}`` dict per record.
    """
    recs = as_records(list(records))
    if backend == "offline":
        return (classifier or default_classifier()).classify(recs)
    if backend == "llm":
        from .feedback_llm import LLMJudge

        return LLMJudge(base_url=base_url, model=model).classify(recs)
    raise ValueError(f"unknown backend {backend!r}; expected 'offline' or 'llm'")


# --- task-level free text ---------------------------------------------------------------------

_TASK_PROTOTYPES = {
    "satisfied": (
        "The answers were helpful, clear and accurate.",
        "Great study, I enjoyed it, the AI was very good.",
        "The response was informative and easy to understand.",
        "Good job, thank you.",
    ),
    "dissatisfied": (
        "The answers were wrong and did not match my question.",
        "The response was not helpful and gave incorrect information.",
        "The AI answered a different question, it did not align with what I asked.",
        "Both responses contained false information.",
    ),
    "neutral": (
        "No comment.",
        "I asked different questions this time.",
        "I got an error and had to enter the question again.",
        "Please make the instructions easier to read.",
    ),
}


_TASK_COMPLAINT = re.compile(
    r"\b(?:wrong|incorrect|untruthful|false|inaccurate|misleading|(?:did|does|do) ?n[o']t align|not aligned?"
    r"|misunderstood|got confused|hallucinat\w*|made (?:it|that|things) up|please improve)\b",
    re.IGNORECASE,
)


def score_task_feedback(text: str | None) -> dict[str, Any]:
    """Sat and ordinal of task-level free-text feedback (IFLLM ``task_table.feedback``).

    Same machinery as the message classifier: the praise / complaint cue patterns plus MiniLM
    similarity to a few prototype comments per class (satisfied / dissatisfied / neutral remarks such
    as site problems). Returns ``{sat, ordinal, confidence, score}`` with ``score`` =
    P(satisfied) - P(dissatisfied) in [-1, 1]; satisfied (ordinal 5) at score >= 0.2, dissatisfied
    (ordinal 1) at <= -0.2, else neutral (3). Empty text or "no"/"none" is neutral.
    """
    from .text_feedback_rules import NEGATIVE_CUES, POSITIVE_CUES

    t = str(text or "").strip()
    if not t or t.lower() in {"nan", "none", "no", "n/a", "na", "nothing", "-", "no comment", "no comments"}:
        return {"sat": "neutral", "ordinal": 3, "confidence": 1.0, "score": 0.0}
    names = list(_TASK_PROTOTYPES)
    protos = [p for n in names for p in _TASK_PROTOTYPES[n]]
    sims = embed([t] + protos)
    s = sims[1:] @ sims[0]
    per = np.array([s[i * 4 : (i + 1) * 4].max() for i in range(len(names))])
    logits = per * 10.0
    negative = bool(NEGATIVE_CUES.search(t) or _TASK_COMPLAINT.search(t))
    if POSITIVE_CUES.search(t) and not negative:
        logits[names.index("satisfied")] += 1.5
    if negative:
        logits[names.index("dissatisfied")] += 2.0
    p = np.exp(logits - logits.max())
    p /= p.sum()
    score = float(p[names.index("satisfied")] - p[names.index("dissatisfied")])
    if score >= 0.2:
        sat, conf = "satisfied", p[names.index("satisfied")]
    elif score <= -0.2:
        sat, conf = "dissatisfied", p[names.index("dissatisfied")]
    else:  # mixed or off-topic remarks (site problems, own mistakes)
        sat, conf = "neutral", 1.0 - abs(score)
    ordinal = {"satisfied": 5, "neutral": 3, "dissatisfied": 1}[sat]
    return {"sat": sat, "ordinal": ordinal, "confidence": round(float(conf), 4), "score": round(score, 4)}


__all__ = [
    "CATEGORIES",
    "DENSE_FEATURES",
    "FOREIGN_MAX_CONFIDENCE",
    "NONE",
    "ORDINAL",
    "ORDINAL_NAMES",
    "SAT",
    "TextFeedbackClassifier",
    "as_records",
    "classify_feedback",
    "default_classifier",
    "embed",
    "load_encoder",
    "load_jsonl",
    "normalize",
    "ordinal_for",
    "result_for",
    "score_task_feedback",
]
