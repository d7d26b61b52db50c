"""The label sources: where the preference labels of a data set come from — the one list.

``gazepref align --label-source``, the alignment config (``[data] label_source``),
:func:`gazepref.datasets.preference.build_pairs` / :func:`~gazepref.datasets.preference.build_unpaired`,
the alignment run's steps and docs/alignment.md (tested) all read :data:`SOURCES`.

A label source is a :class:`LabelSource`: a ``name``, a one-line ``description`` and a
``builder``, a function ``builder(turns, options, stats)`` that labels a recording's turns and
yields :class:`~gazepref.datasets.preference.PreferencePair` (DPO; KTO takes both sides) and/or
:class:`~gazepref.datasets.preference.UnpairedExample` (KTO) items. It sees every turn in recording
order, so a label may span turns (an answer the user rejected and its revision). The flags say
what the alignment run prepares for it: ``reward_model`` (the ``reward`` step scores every
pairwise turn and hands the builder ``options.pair_score``), ``implicit_features`` (the
``features`` step computes the gaze/mouse features that reward model reads); ``gives`` what it
yields (``"pairs"``, ``"unpaired"``).

To add a source, write its builder (count what it labels in ``stats.labelled`` and what it could
not in ``stats.unlabelled_or_tied``) and add one entry to :data:`SOURCES`; the builder is named
``"module:function"`` so that listing the sources (the command line does at start) imports
nothing. :func:`register` adds one at run time (plug-ins, tests).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import UserError

if TYPE_CHECKING:
    from .. import schema
    from .preference import BuildStats, PairScore, PreferencePair, TurnScore, UnpairedExample

__all__ = ["SOURCES", "LabelOptions", "LabelSource", "get", "names", "register", "sources", "unregister"]

PAIRS, UNPAIRED = "pairs", "unpaired"


@dataclass(frozen=True)
class LabelOptions:
    """What a builder may use besides the turns.

    Attributes
    ----------
    source
        The label source's name (what the items' ``label_source`` says); set by
        :meth:`LabelSource.build`.
    context_messages
        Earlier chat messages kept in each prompt (None: all).
    turn_score
        A per-response scorer applied to a turn, ``(turn, position) -> (reward, confidence)``.
    pair_score
        A pairwise reward model's verdict on a turn, ``turn -> (log-odds left preferred, confidence)``.
    extra
        Anything else a new source needs (a feedback classifier, say), by name.
    """
    source: str = ""
    context_messages: int | None = None
    turn_score: TurnScore | None = None
    pair_score: PairScore | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: ``builder(turns, options, stats)``: the labelled items of ``turns``
Builder = Callable[["Sequence[schema.Turn]", LabelOptions, "BuildStats"],
                   "Iterable[PreferencePair | UnpairedExample]"]


@dataclass(frozen=True)
class LabelSource:
    """One label source (see the module doc).

    Attributes
    ----------
    name
        What ``--label-source`` and ``[data] label_source`` take.
    description
        One line for the command line's help and the docs.
    builder
        The function labelling turns, or its ``"module:function"`` name (imported on first use).
    reward_model
        Labels are a reward model's verdicts: ``gazepref align`` needs ``--reward-model`` (or the
        length baseline) and scores every pairwise turn first.
    implicit_features
        That reward model reads implicit (gaze/mouse) features: ``gazepref align`` computes them
        first and needs a trained reward model (not the length baseline).
    gives
        ``"pairs"`` (DPO; KTO uses both sides with ``kto_include_pairwise``) and/or ``"unpaired"``
        (KTO examples).
    mined_feedback
        Labels come from the text feedback in the source's conversations (a chat log, or a
        recording's tasks): ``gazepref align``'s ``reward`` step mines it
        (:func:`gazepref.models.feedback_source.mine`) and the ``pairs`` step builds from the mined
        table (:func:`gazepref.models.feedback_source.build`, which calls ``builder`` as
        ``builder(conversations, feedback, context_messages, ...)``), not from the turns.
    """
    name: str
    description: str
    builder: str | Builder
    reward_model: bool = False
    implicit_features: bool = False
    gives: tuple[str, ...] = (PAIRS,)
    mined_feedback: bool = False

    def function(self) -> Builder:
        """The builder function (imported when given by name)."""
        if callable(self.builder):
            return self.builder
        module, _, attr = self.builder.partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, turns: Sequence[schema.Turn], options: LabelOptions | None = None,
              stats: BuildStats | None = None) -> Iterable[PreferencePair | UnpairedExample]:
        """The labelled items of ``turns`` (in recording order) under this source."""
        from .preference import BuildStats

        opts = replace(options or LabelOptions(), source=self.name)
        return self.function()(turns, opts, stats if stats is not None else BuildStats())


_P = "gazepref.datasets.preference"
_F = "gazepref.datasets.feedback_pairs"

#: The label sources, in the order the command line lists them.
SOURCES: tuple[LabelSource, ...] = (
    LabelSource("human", "the participant's pairwise choice (confidence from the Likert ratings' agreement)",
                f"{_P}:human_pairs"),
    LabelSource("ratings", "the higher of a pairwise turn's two Likert ratings (ties dropped)",
                f"{_P}:ratings_pairs"),
    LabelSource("text_rm", "a text reward model's verdict on every pairwise turn (or the length baseline)",
                f"{_P}:reward_model_pairs", reward_model=True),
    LabelSource("implicit_rm", "an implicit reward model's verdict from the turn's gaze/mouse features",
                f"{_P}:reward_model_pairs", reward_model=True, implicit_features=True),
    LabelSource("fused_rm", "a fused (text + gaze/mouse) reward model's verdict on every pairwise turn",
                f"{_P}:reward_model_pairs", reward_model=True, implicit_features=True),
    LabelSource("feedback_pairs", "pairs from conversations: a revised answer the user accepted over the answer "
                "they rejected (mined text feedback; DPO, or both sides for KTO)",
                f"{_F}:build_feedback_pairs", mined_feedback=True),
    LabelSource("feedback_kto", "KTO examples from conversations: answers met with satisfaction (desirable) or "
                "rejection/correction (undesirable), weighted by the classifier's confidence",
                f"{_F}:build_feedback_kto", mined_feedback=True, gives=(UNPAIRED,)),
)

_REGISTRY: dict[str, LabelSource] = {s.name: s for s in SOURCES}


def register(source: LabelSource, replace_existing: bool = False) -> LabelSource:
    """Add ``source`` at run time (an entry in :data:`SOURCES` is the usual way)."""
    if source.name in _REGISTRY and not replace_existing:
        raise ValueError(f"label source {source.name!r} exists already")
    if not set(source.gives) or not set(source.gives) <= {PAIRS, UNPAIRED}:
        raise ValueError(f"label source {source.name!r}: gives must be 'pairs' and/or 'unpaired'")
    _REGISTRY[source.name] = source
    return source


def unregister(name: str) -> None:
    """Remove a source added by :func:`register` (tests)."""
    _REGISTRY.pop(name, None)


def sources() -> tuple[LabelSource, ...]:
    """Every label source, in order."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The names of the label sources, in order."""
    return tuple(_REGISTRY)


def get(name: str) -> LabelSource:
    """The label source ``name``; a :class:`~gazepref.UserError` naming the others if there is none."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown label source {name!r} (one of {', '.join(names())})") from None
