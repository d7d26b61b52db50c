"""Preference data sets for DPO/KTO from any recording (IFLLM release, Parquet export, study).

:func:`build_pairs` turns the turns of a recording into preference pairs, :func:`build_unpaired`
into desirable/undesirable examples for KTO; :func:`split_by_worker` splits them so that no
worker is in two splits; :func:`save` writes Hugging Face ``datasets`` (``save_to_disk``) and
JSONL, :func:`load` reads either back.

Rows are in TRL's *conversational* format::

    prompt    [{"role": "user", "content": ...}, {"role": "assistant", ...}, ..., {"role": "user", ...}]
    chosen    [{"role": "assistant", "content": <preferred response>}]
    rejected  [{"role": "assistant", "content": <other response>}]

plus ``confidence`` (0.5-1: how sure the label is), ``label_source``, ``margin`` (source-specific
strength: Likert difference, reward difference, ...), ``participant_id``, ``task_id``, ``turn_id``,
``turn`` (the keys of the feature tables, docs/features.md), ``chosen_model``, ``rejected_model``,
``chosen_position`` and ``pair_id``. Data sets written before version 2 named ``participant_id``
``worker`` and ``turn`` ``turn_index``: :func:`load` reads them under the new names. The
prompt holds the earlier chat messages of the task (``Turn.context``) and, last, the user message
as the LLM received it (``Turn.prompt_sent``: IFLLM's " respond using bullet points" modifier
included, since that is what the responses answer).

**Orientation.** ``chosen`` is always the response the label prefers: for ``human`` the one the
participant picked (``Turn.choice``, LEFT = responses[0]); IFLLM's own released DPO file had it the
other way round, which is why the tests pin this down.

Label sources (``label_source``) are listed once, in :mod:`gazepref.datasets.label_sources`; the
builders of the built-in ones are here (:func:`human_pairs`, :func:`ratings_pairs`,
:func:`reward_model_pairs`: their docstrings say how each orients and weighs its labels).

Unpaired (KTO), from pointwise turns: ``better_than_previous`` True → desirable, False →
undesirable (confidence 0.8, or 1.0 when the Likert rating agrees, 0.6 when it disagrees); where it is
missing, Likert ≥ 4 → desirable, ≤ 2 → undesirable (confidence 0.7), 3 skipped.
Optionally the two responses of every pair also become one desirable and one undesirable example.

De-duplication: pairs with the same prompt and the same two texts are merged (the most confident
kept); if they disagree on which is better, all are dropped (counted in the stats).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import UserError, schema
from . import label_sources
from .conversations import read_jsonl
from .label_sources import LabelOptions

SPLITS = ("train", "test")
FORMAT = "gazepref-preference"
FORMAT_VERSION = 2  # 2: participant_id, turn (1: worker, turn_index; still read)
#: columns of version-1 data sets, read under their new names by :func:`load`
OLD_COLUMNS = {"worker": "participant_id", "turn_index": "turn"}

Messages = list[dict[str, str]]


# --------------------------------------------------------------------------- scorers


@runtime_checkable
class RewardScorer(Protocol):
    """Anything that scores a response to a prompt: ``score(prompt, response) -> (reward, confidence)``.

    ``prompt`` is the chat so far (a list of messages, last one the user's) or a plain string;
    ``reward`` is on a logit-like scale (differences feed a sigmoid); ``confidence`` in [0, 1].
    The project's reward models (:mod:`gazepref.models.scoring`) are adapted to this by
    :func:`gazepref.models.align_scorers.load_scorer`.
    """

    def score(self, prompt: Any, response: str) -> tuple[float, float]: ...


class LengthBaselineScorer:
    """Baseline scorer: the longer response wins (the IFLLM README's untrained 59.8-60% baseline).

    reward = log(1 + words) · ``scale``; confidence ``confidence``. Not a reward model: a reference
    point for win rates and a scorer for tests.
    """

    name = "length-baseline"

    def __init__(self, scale: float = 1.0, confidence: float = 0.6):
        self.scale = scale
        self.confidence = confidence

    def score(self, prompt: Any, response: str) -> tuple[float, float]:
        return self.scale * math.log1p(len(response.split())), self.confidence


#: ``(turn, position) -> (reward, confidence)``: a per-response scorer applied to a turn.
TurnScore = Callable[[schema.Turn, int], tuple[float, float]]
#: ``turn -> (log-odds that responses[0] is preferred, confidence)``: a pairwise reward model's
#: verdict on a turn (what :meth:`gazepref.models.scoring.RewardModel.score_frame` gives, implicit
#: features included).
PairScore = Callable[[schema.Turn], tuple[float, float]]


def text_turn_score(scorer: RewardScorer, context_messages: int | None = None) -> TurnScore:
    def f(turn: schema.Turn, position: int) -> tuple[float, float]:
        return scorer.score(prompt_messages(turn, context_messages), turn.responses[position].text)

    return f


# --------------------------------------------------------------------------- records


@dataclass
class PreferencePair:
    prompt: Messages
    chosen: str  # the preferred response's text
    rejected: str
    confidence: float
    label_source: str
    margin: float
    participant_id: str
    task_id: str
    turn_id: str
    turn: int  # 0-based index of the turn in its task (conversations: of the message)
    chosen_model: str = ""
    rejected_model: str = ""
    chosen_position: int = 0

    @property
    def pair_id(self) -> str:
        return _digest(self.prompt, *sorted([self.chosen, self.rejected]))

    def to_row(self) -> dict[str, Any]:
        d = asdict(self)
        d["chosen"] = [{"role": "assistant", "content": self.chosen}]
        d["rejected"] = [{"role": "assistant", "content": self.rejected}]
        d["pair_id"] = self.pair_id
        return d


@dataclass
class UnpairedExample:
    prompt: Messages
    completion: str
    label: bool  # True = desirable
    confidence: float
    label_source: str
    participant_id: str
    task_id: str
    turn_id: str
    turn: int
    model: str = ""

    @property
    def example_id(self) -> str:
        return _digest(self.prompt, self.completion)

    def to_row(self) -> dict[str, Any]:
        d = asdict(self)
        d["completion"] = [{"role": "assistant", "content": self.completion}]
        d["example_id"] = self.example_id
        return d


def _digest(prompt: Messages, *texts: str) -> str:
    h = hashlib.sha1(json.dumps([prompt, *texts], ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:16]


def prompt_messages(turn: schema.Turn, context_messages: int | None = None) -> Messages:
    """The chat the responses answered: earlier messages (the last ``context_messages`` of them,
    all when None; always starting on a user message) + the user message as sent."""
    ctx = trim_context([{"role": str(m["role"]), "content": str(m["content"])} for m in (turn.context or [])],
                       context_messages)
    text = turn.prompt_sent if turn.prompt_sent else turn.prompt
    return ctx + [{"role": "user", "content": text}]


def trim_context(ctx: Messages, context_messages: int | None) -> Messages:
    """The last ``context_messages`` of ``ctx`` (all when None), starting on a user message."""
    if context_messages is None:
        return ctx
    ctx = ctx[len(ctx) - min(len(ctx), context_messages):] if context_messages > 0 else []
    while ctx and ctx[0]["role"] != "user":
        ctx = ctx[1:]
    return ctx


# --------------------------------------------------------------------------- labels


def _pair(turn: schema.Turn, win: int, conf: float, source: str, margin: float,
          context_messages: int | None) -> PreferencePair:
    a, b = turn.responses[win], turn.responses[1 - win]
    return PreferencePair(
        prompt=prompt_messages(turn, context_messages), chosen=a.text, rejected=b.text,
        confidence=round(float(conf), 6), label_source=source, margin=float(margin),
        participant_id=turn.participant_id, task_id=turn.task_id, turn_id=turn.turn_id, turn=int(turn.index), chosen_model=a.model,
        rejected_model=b.model, chosen_position=int(a.position),
    )


def human_confidence(turn: schema.Turn) -> float:
    win = turn.choice
    l_win, l_lose = turn.responses[win].likert, turn.responses[1 - win].likert
    if l_win is None or l_lose is None or l_win == l_lose:
        conf = 0.8
    elif l_win > l_lose:
        conf = 1.0
    else:
        conf = 0.6
    if turn.choice_strength in (1, 2, 3):
        conf *= (0.7, 0.85, 1.0)[turn.choice_strength - 1]
    return max(0.5, conf)


def rm_confidence(r_win: float, r_lose: float, c_win: float, c_lose: float) -> float:
    p = 1.0 / (1.0 + math.exp(-(r_win - r_lose)))
    c = math.sqrt(max(0.0, min(1.0, c_win)) * max(0.0, min(1.0, c_lose)))
    return 0.5 + (p - 0.5) * c


def _usable(turn: schema.Turn) -> bool:
    return (turn.pairwise and len(turn.responses) == 2 and all(r.text and r.text.strip() for r in turn.responses)
            and turn.responses[0].text != turn.responses[1].text)


def label_turn(turn: schema.Turn, source: str, turn_score: TurnScore | None = None,
               context_messages: int | None = None, pair_score: PairScore | None = None) -> PreferencePair | None:
    """The preference pair of one pairwise turn under ``source``, or None (no label, a tie)."""
    opts = LabelOptions(context_messages=context_messages, turn_score=turn_score, pair_score=pair_score)
    return next((p for p in label_sources.get(source).build([turn], opts) if isinstance(p, PreferencePair)), None)


def _per_turn(label: Callable[[schema.Turn, LabelOptions], PreferencePair | None]):
    """A label source builder from a labeller of one pairwise turn (None: no label, a tie)."""
    def build(turns: Sequence[schema.Turn], options: LabelOptions, stats: BuildStats):
        for turn in turns:
            if not turn.pairwise:
                continue
            p = label(turn, options) if _usable(turn) else None
            if p is None:
                stats.unlabelled_or_tied += 1
                continue
            stats.labelled += 1
            yield p

    build.__doc__ = label.__doc__
    return build


def _human(turn: schema.Turn, o: LabelOptions) -> PreferencePair | None:
    """``human``: the pairwise choice. Confidence 1.0 when the participant's Likert ratings agree with
    the choice (chosen rated higher), 0.8 when they tie or are missing, 0.6 when they contradict
    it; times (0.7, 0.85, 1.0)[strength-1] where a choice strength (1-3) was recorded."""
    if turn.choice not in (schema.LEFT, schema.RIGHT):
        return None
    return _pair(turn, turn.choice, human_confidence(turn), o.source, 1.0, o.context_messages)


def _ratings(turn: schema.Turn, o: LabelOptions) -> PreferencePair | None:
    """``ratings``: the difference of the two Likert ratings of a pairwise turn; ties dropped.
    Confidence 0.5 + |Δ|/8 (Δ = 1 → 0.625, Δ = 4 → 1.0)."""
    l0, l1 = turn.responses[0].likert, turn.responses[1].likert
    if l0 is None or l1 is None or l0 == l1:
        return None
    win = 0 if l0 > l1 else 1
    d = abs(l0 - l1)
    return _pair(turn, win, min(1.0, 0.5 + d / 8), o.source, float(d), o.context_messages)


def _reward_model(turn: schema.Turn, o: LabelOptions) -> PreferencePair | None:
    """``text_rm`` / ``implicit_rm`` / ``fused_rm``: a reward model's verdict on any pairwise turn,
    labelled or not. From a pairwise reward model (``pair_score``: log-odds z that the left
    response is preferred, and its confidence, as :mod:`gazepref.models.scoring` gives them,
    implicit features included for implicit/fused models): chosen = left if z > 0, confidence =
    the model's (max(p, 1 − p)), margin = |z|. From a per-response scorer (``turn_score``): chosen
    = higher reward, confidence 0.5 + (σ(Δr) − 0.5)·√(c₀·c₁), the Bradley-Terry probability shrunk
    towards 0.5 by the scorer's own confidences. Ties dropped."""
    if o.pair_score is not None:
        z, conf = o.pair_score(turn)
        if not math.isfinite(z) or z == 0:
            return None
        return _pair(turn, 0 if z > 0 else 1, min(1.0, max(0.5, conf)), o.source, abs(float(z)), o.context_messages)
    if o.turn_score is None:
        raise UserError(f"label source {o.source!r} needs a reward model (--reward-model PATH)")
    (r0, c0), (r1, c1) = o.turn_score(turn, 0), o.turn_score(turn, 1)
    if not (math.isfinite(r0) and math.isfinite(r1)) or r0 == r1:
        return None
    win = 0 if r0 > r1 else 1
    rw, rl, cw, cl = (r0, r1, c0, c1) if win == 0 else (r1, r0, c1, c0)
    return _pair(turn, win, rm_confidence(rw, rl, cw, cl), o.source, float(rw - rl), o.context_messages)


#: builders of the built-in label sources (:data:`gazepref.datasets.label_sources.SOURCES`)
human_pairs = _per_turn(_human)
ratings_pairs = _per_turn(_ratings)
reward_model_pairs = _per_turn(_reward_model)


@dataclass
class BuildStats:
    turns: int = 0
    pairwise_turns: int = 0
    labelled: int = 0
    unlabelled_or_tied: int = 0
    duplicates_merged: int = 0
    conflicts_dropped: int = 0
    kept: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def build_pairs(turns: Iterable[schema.Turn], source: str = "human", turn_score: TurnScore | None = None,
                context_messages: int | None = None, min_confidence: float = 0.0,
                stats: BuildStats | None = None, pair_score: PairScore | None = None) -> list[PreferencePair]:
    """Preference pairs of ``turns`` under label source ``source``
    (:mod:`~gazepref.datasets.label_sources`), de-duplicated (see the module doc)."""
    src = label_sources.get(source)
    if label_sources.PAIRS not in src.gives:
        raise UserError(f"label source {source!r} gives unpaired examples only (use KTO: --algorithm kto)")
    st = stats if stats is not None else BuildStats()
    turns = list(turns)
    st.turns += len(turns)
    st.pairwise_turns += sum(1 for t in turns if t.pairwise)
    opts = LabelOptions(context_messages=context_messages, turn_score=turn_score, pair_score=pair_score)
    pairs = [p for p in src.build(turns, opts, st)
             if isinstance(p, PreferencePair) and p.confidence >= min_confidence]
    out = dedup_pairs(pairs, st)
    st.kept = len(out)
    return out


def dedup_pairs(pairs: Sequence[PreferencePair], stats: BuildStats | None = None) -> list[PreferencePair]:
    groups: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        groups.setdefault(p.pair_id, []).append(p)
    out = []
    for g in groups.values():
        if len({p.chosen for p in g}) > 1:
            if stats is not None:
                stats.conflicts_dropped += len(g)
            continue
        if stats is not None:
            stats.duplicates_merged += len(g) - 1
        out.append(max(g, key=lambda p: p.confidence))
    return out


def build_unpaired(turns: Iterable[schema.Turn], include_pairwise: bool = False, pair_source: str = "human",
                   turn_score: TurnScore | None = None, context_messages: int | None = None,
                   stats: BuildStats | None = None, pair_score: PairScore | None = None) -> list[UnpairedExample]:
    """Desirable/undesirable examples for KTO from pointwise turns, the unpaired examples of
    ``pair_source`` (a source that gives them) and, with ``include_pairwise``, both sides of each
    ``pair_source`` pair; de-duplicated by (prompt, completion), in recording order."""
    src = label_sources.get(pair_source)
    st = stats if stats is not None else BuildStats()
    turns = list(turns)
    st.pairwise_turns += sum(1 for t in turns if t.pairwise)
    by_turn: dict[str, list[UnpairedExample]] = {}  # the source's examples, placed at their turn
    if (include_pairwise and label_sources.PAIRS in src.gives) or label_sources.UNPAIRED in src.gives:
        opts = LabelOptions(context_messages=context_messages, turn_score=turn_score, pair_score=pair_score)
        src_stats = BuildStats()
        for item in src.build(turns, opts, src_stats):
            if isinstance(item, UnpairedExample):
                by_turn.setdefault(item.turn_id, []).append(item)
            elif include_pairwise:
                p = item
                by_turn.setdefault(p.turn_id, []).extend(
                    UnpairedExample(p.prompt, text, lab, p.confidence, f"{pair_source}_pair", p.participant_id,
                                    p.task_id, p.turn_id, p.turn, model)
                    for text, lab, model in ((p.chosen, True, p.chosen_model), (p.rejected, False, p.rejected_model)))
        st.unlabelled_or_tied += src_stats.unlabelled_or_tied  # the source's turns it could not label
    out: list[UnpairedExample] = []
    for t in turns:
        st.turns += 1
        out += by_turn.pop(t.turn_id, [])
        if t.pairwise:
            continue
        if not t.responses or not t.responses[0].text.strip():
            st.unlabelled_or_tied += 1
            continue
        r = t.responses[0]
        lik = r.likert
        lik_label = None if lik is None or lik == 3 else lik >= 4
        if t.better_than_previous is not None:
            label = bool(t.better_than_previous)
            conf = 0.8 if lik_label is None else (1.0 if lik_label == label else 0.6)
            src_name = "better_than_previous"
        elif lik_label is not None:
            label, conf, src_name = lik_label, 0.7, "likert"
        else:  # no better/worse and a neutral or missing rating
            st.unlabelled_or_tied += 1
            continue
        out.append(UnpairedExample(prompt_messages(t, context_messages), r.text, label, conf, src_name,
                                   t.participant_id, t.task_id, t.turn_id, int(t.index), r.model))
    for rest in by_turn.values():  # examples of turns not among ``turns``
        out += rest
    kept = dedup_unpaired(out, st)
    st.kept = len(kept)
    st.labelled = len(out)
    return kept


def dedup_unpaired(examples: Sequence[UnpairedExample], stats: BuildStats | None = None) -> list[UnpairedExample]:
    """Examples with the same prompt and completion merged (the most confident kept); all dropped
    when they disagree on the label (counted in ``stats``)."""
    groups: dict[str, list[UnpairedExample]] = {}
    for e in examples:
        groups.setdefault(e.example_id, []).append(e)
    kept = []
    for g in groups.values():
        if len({e.label for e in g}) > 1:
            if stats is not None:
                stats.conflicts_dropped += len(g)
            continue
        if stats is not None:
            stats.duplicates_merged += len(g) - 1
        kept.append(max(g, key=lambda e: e.confidence))
    return kept


# --------------------------------------------------------------------------- splits


def split_workers(workers: Iterable[str], test_fraction: float = 0.2, seed: int = 0) -> dict[str, str]:
    """worker → split. Workers are shuffled with ``seed`` (stable across runs and machines); at
    least one worker goes to test when there are two or more."""
    ws = sorted(set(workers))
    rng = random.Random(seed)
    ws_sh = sorted(ws, key=lambda w: hashlib.sha1(f"{seed}:{w}".encode()).hexdigest())
    rng.shuffle(ws_sh)
    n_test = 0 if len(ws) < 2 or test_fraction <= 0 else max(1, round(test_fraction * len(ws)))
    n_test = min(n_test, len(ws) - 1) if len(ws) > 1 else 0
    return {w: ("test" if i < n_test else "train") for i, w in enumerate(ws_sh)}


def split_by_worker(items: Sequence[Any], test_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Any]]:
    """{"train": [...], "test": [...]}: no participant (worker) in both."""
    assign = split_workers((x.participant_id for x in items), test_fraction, seed)
    out: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for x in items:
        out[assign[x.participant_id]].append(x)
    return out


# --------------------------------------------------------------------------- saving


def to_dataset_dict(splits: dict[str, list[Any]]):
    """A ``datasets.DatasetDict`` of the splits (empty splits keep the columns)."""
    from datasets import Dataset, DatasetDict

    out = {name: Dataset.from_list([x.to_row() for x in items]) for name, items in splits.items() if items}
    template = next(iter(out.values()), None)
    for name, items in splits.items():
        if not items:  # an empty split keeps the columns and types of the others
            out[name] = template.select([]) if template is not None else Dataset.from_dict({})
    return DatasetDict({name: out[name] for name in splits})


def save(splits: dict[str, list[Any]], out: str | os.PathLike, kind: str = "pairs",
         stats: BuildStats | dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out/hf`` (``DatasetDict.save_to_disk``), ``out/<split>.jsonl`` and ``out/manifest.json``
    (format, version, kind, ``counts`` and ``participants`` per split, build ``stats``, ``meta``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = to_dataset_dict(splits)
    ds.save_to_disk(str(out / "hf"), num_shards={k: 1 for k in ds})  # (an empty split needs its one shard)
    counts = {}
    for name, items in splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for x in items:
                fh.write(json.dumps(x.to_row(), ensure_ascii=False) + "\n")
        counts[name] = len(items)
    st = asdict(stats) if isinstance(stats, BuildStats) else (stats or {})
    participants = {name: len({x.participant_id for x in items}) for name, items in splits.items()}
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "counts": counts, "participants": participants,
                "stats": st, **(meta or {})}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def load(path: str | os.PathLike):
    """A ``DatasetDict`` from a folder written by :func:`save` (``hf/``, or the JSONL files), a
    ``save_to_disk`` folder, or one JSONL file (→ its only split, ``train``). Columns of version-1
    data sets (:data:`OLD_COLUMNS`: ``worker``, ``turn_index``) come back under their new names."""
    return _renamed(_load(path))


def _renamed(ds):
    for old, new in OLD_COLUMNS.items():
        for name in list(ds):
            if old in ds[name].column_names and new not in ds[name].column_names:
                ds[name] = ds[name].rename_column(old, new)
    return ds


def _load(path: str | os.PathLike):
    from datasets import Dataset, DatasetDict, load_from_disk

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such file or folder: {p}")
    if p.is_file():
        if p.suffix != ".jsonl":
            raise UserError(f"{p}: expected a .jsonl file or a preference data folder")
        return DatasetDict({"train": Dataset.from_list(read_jsonl(p))})
    if (p / "hf").is_dir():
        return load_from_disk(str(p / "hf"))
    if (p / "dataset_dict.json").exists() or (p / "dataset_info.json").exists():
        d = load_from_disk(str(p))
        return d if isinstance(d, DatasetDict) else DatasetDict({"train": d})
    files = sorted(p.glob("*.jsonl"))
    if files:
        return DatasetDict({f.stem: Dataset.from_list(read_jsonl(f)) for f in files})
    raise UserError(f"{p}: not a preference data set (no hf/, dataset_dict.json or *.jsonl)")


#: the columns of a preference record: DPO's pairs, KTO's unpaired examples
PAIR_KEYS, EXAMPLE_KEYS = ("prompt", "chosen", "rejected"), ("prompt", "completion", "label")


def check_preference_file(path: str | os.PathLike) -> None:
    """Check that the ``.jsonl`` file ``path``, given as a preference data set, holds one: its first
    record has DPO's ``prompt``/``chosen``/``rejected`` or KTO's ``prompt``/``completion``/``label``.

    Raises
    ------
    UserError
        before anything is written: for a chat log (OpenAI ``messages``, ShareGPT
        ``conversations``, WildChat ``conversation``: its text feedback is mined by the label
        sources ``feedback_pairs`` and ``feedback_kto``), another record, or no record at all.
        A line that is not JSON is left to the reader, which names it.
    """
    from .conversations import Malformed, detect_format, iter_jsonl

    for n, rec, err in iter_jsonl(path):
        if err is not None or not isinstance(rec, dict):
            return
        if all(k in rec for k in PAIR_KEYS) or all(k in rec for k in EXAMPLE_KEYS):
            return
        try:
            detect_format(rec)  # a conversation's record (the chat-log readers' own rule)
        except Malformed:
            pass
        else:
            raise UserError(f"{path} is a chat log (line {n} is a conversation), not a preference data set: "
                            "mine its text feedback with --label-source feedback_pairs (DPO pairs) or "
                            "feedback_kto (KTO examples)")
        raise UserError(f"{path}, line {n}: not a preference record (DPO: {', '.join(PAIR_KEYS)}; KTO: "
                        f"{', '.join(EXAMPLE_KEYS)}); it has {', '.join(sorted(map(str, rec))[:8]) or 'no key'}")
    raise UserError(f"{path}: no record (an empty preference data set)")


def is_preference_data(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.is_file():
        return p.suffix == ".jsonl"
    m = p / "manifest.json"
    if m.exists():
        try:
            return json.loads(m.read_text()).get("format") == FORMAT
        except ValueError:
            return False
    return (p / "dataset_dict.json").exists()

