"""Preference pairs and KTO examples from naturally occurring feedback in conversations.

Input: conversations (:mod:`gazepref.datasets.conversations`) and the feedback mined from them
(:mod:`gazepref.signals.feedback_mining`: per answer, keyed by ``(conversation_id, turn)``, its
``ordinal`` level 1-5 and ``confidence``). Output: the records of :mod:`gazepref.datasets.preference`
(:class:`~gazepref.datasets.preference.PreferencePair`,
:class:`~gazepref.datasets.preference.UnpairedExample`), so they are split, saved and trained on
like every other label source.

Label sources:

``feedback_pairs`` (:func:`build_feedback_pairs`)
    A dissatisfied reaction (level <= ``reject_level``, default 2: rejection or correction) to an
    answer, then a revised answer (the very next assistant turn) that the user accepted: its own
    reaction is at least ``accept_level`` (default 3: no further complaint; 5 asks for explicit
    praise). ``chosen`` = the revision, ``rejected`` = the rejected answer, ``prompt`` = the chat up
    to the request the rejected answer replied to. A run of several rejected answers before the
    accepted one gives one pair per rejected answer. A revision with no reaction (the chat ends) or
    rejected again is no evidence and gives no pair (counted). Confidence
    ``0.5 + 0.5·sqrt(c_reject · c_accept)`` (both classifier verdicts must hold), margin = the level
    difference.
``feedback_kto`` (:func:`build_feedback_kto`)
    Every answer with a reaction: desirable when its level is at least ``desirable_level`` (default 5:
    satisfaction; 4 adds engagement), undesirable when at most ``reject_level`` (rejection,
    correction); neutral answers are left out. ``confidence`` = the classifier's confidence (the
    example's weight; ``min_confidence`` drops the unsure ones).

``worker`` (what the train/test split groups by) is the conversation's user id, or its
conversation id when the source has no users.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .conversations import Conversation
from .preference import BuildStats, PreferencePair, UnpairedExample, dedup_pairs, dedup_unpaired, trim_context

#: ``(conversation_id, turn) -> {"ordinal": 1-5, "confidence": 0-1, ...}``
Feedback = Mapping[tuple[str, int], Mapping[str, Any]]


def feedback_index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Mined rows (dicts, or a DataFrame's records) keyed by ``(conversation_id, turn)``."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = rows.to_dict("records")
    return {(str(r["conversation_id"]), int(r["turn"])): dict(r) for r in rows}


def _worker(conv: Conversation) -> str:
    return str(conv.user_id) if conv.user_id not in (None, "") else f"conversation:{conv.conversation_id}"


def _prompt(conv: Conversation, i: int, context_messages: int | None) -> list[dict[str, str]]:
    """The chat before assistant turn ``i`` (ending on the user's request), trimmed to the last
    ``context_messages`` messages before that request."""
    msgs = conv.messages(upto=i)
    last_user = max((k for k, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last_user is None:
        return []
    return trim_context(msgs[:last_user], context_messages) + msgs[last_user:]


def _answers(conv: Conversation, feedback: Feedback) -> list[tuple[int, int | None, float]]:
    """``(turn, level or None, confidence)`` of each assistant turn, in order."""
    out = []
    for i, t in enumerate(conv.turns):
        if t.role == "assistant":
            fb = feedback.get((conv.conversation_id, i))
            out.append((i, None if fb is None else int(fb["ordinal"]), 0.0 if fb is None else float(fb["confidence"])))
    return out


def build_feedback_pairs(conversations: Iterable[Conversation], feedback: Feedback, context_messages: int | None = None,
                         reject_level: int = 2, accept_level: int = 3, min_confidence: float = 0.0,
                         stats: BuildStats | None = None) -> list[PreferencePair]:
    """Pairs (revised answer the user accepted > the answer they rejected); see the module doc."""
    st = stats if stats is not None else BuildStats()
    ex = st.extra
    # each rejected answer ends in one of revision_accepted, below_min_confidence, identical_revision,
    # revision_without_reaction, no_revision (they add up to rejected_answers);
    # revision_rejected_again counts those of them that were themselves a revision (a subset)
    for k in ("rejected_answers", "revision_accepted", "revision_rejected_again", "revision_without_reaction",
              "no_revision", "identical_revision", "below_min_confidence"):
        ex.setdefault(k, 0)
    pairs: list[PreferencePair] = []
    for conv in conversations:
        answers = _answers(conv, feedback)
        st.turns += len(answers)
        run: list[tuple[int, int, float]] = []  # rejected answers waiting for an accepted revision
        for k, (i, level, conf) in enumerate(answers):
            if level is None:
                if run:
                    ex["revision_without_reaction"] += len(run)
                run = []
                continue
            if level <= reject_level:
                ex["rejected_answers"] += 1
                if run:
                    ex["revision_rejected_again"] += 1
                # the revision must be the next assistant turn, right after the user's reaction
                nxt = answers[k + 1][0] if k + 1 < len(answers) else None
                if nxt is None or nxt != i + 2:
                    ex["no_revision"] += 1 + len(run)
                    run = []
                    continue
                run.append((i, level, conf))
                continue
            if run and level >= accept_level:
                for j, lj, cj in run:
                    a, b = conv.turns[i], conv.turns[j]
                    if a.text.strip() == b.text.strip() or not a.text.strip() or not b.text.strip():
                        ex["identical_revision"] += 1
                        continue
                    c = 0.5 + 0.5 * math.sqrt(max(0.0, min(1.0, cj)) * max(0.0, min(1.0, conf)))
                    st.labelled += 1
                    if c < min_confidence:
                        ex["below_min_confidence"] += 1
                        continue
                    ex["revision_accepted"] += 1
                    pairs.append(PreferencePair(
                        prompt=_prompt(conv, j, context_messages), chosen=a.text, rejected=b.text,
                        confidence=round(c, 6), label_source="feedback_pairs", margin=float(level - lj),
                        participant_id=_worker(conv), task_id=conv.conversation_id,
                        turn_id=b.turn_id or f"{conv.conversation_id}:{j}",
                        turn=j, chosen_model=a.model, rejected_model=b.model, chosen_position=0))
            elif run:
                ex["no_revision"] += len(run)  # accepted below accept_level (e.g. neutral with accept_level 5)
            run = []
        if run:
            ex["revision_without_reaction"] += len(run)
    out = dedup_pairs(pairs, st)
    st.kept = len(out)
    return out


def build_feedback_kto(conversations: Iterable[Conversation], feedback: Feedback, context_messages: int | None = None,
                       desirable_level: int = 5, reject_level: int = 2, min_confidence: float = 0.0,
                       stats: BuildStats | None = None) -> list[UnpairedExample]:
    """Desirable (level >= ``desirable_level``) and undesirable (level <= ``reject_level``) answers."""
    if desirable_level <= reject_level:
        raise ValueError("desirable_level must be above reject_level")
    st = stats if stats is not None else BuildStats()
    ex = st.extra
    for k in ("desirable", "undesirable", "neutral_skipped", "no_reaction", "below_min_confidence"):
        ex.setdefault(k, 0)
    out: list[UnpairedExample] = []
    for conv in conversations:
        for i, level, conf in _answers(conv, feedback):
            st.turns += 1
            if level is None:
                ex["no_reaction"] += 1
                continue
            if reject_level < level < desirable_level:
                ex["neutral_skipped"] += 1
                continue
            t = conv.turns[i]
            if not t.text.strip():
                continue
            if conf < min_confidence:
                ex["below_min_confidence"] += 1
                continue
            good = level >= desirable_level
            ex["desirable" if good else "undesirable"] += 1
            out.append(UnpairedExample(_prompt(conv, i, context_messages), t.text, good, round(float(conf), 6),
                                       "feedback_kto", _worker(conv), conv.conversation_id,
                                       t.turn_id or f"{conv.conversation_id}:{i}", i, t.model))
    st.labelled = len(out)
    kept = dedup_unpaired(out, st)
    st.kept = len(kept)
    return kept


def pairs_as_unpaired(pairs: Iterable[PreferencePair]) -> list[UnpairedExample]:
    """Both sides of each pair as KTO examples (chosen desirable, rejected undesirable)."""
    out = []
    for p in pairs:
        for text, lab, model in ((p.chosen, True, p.chosen_model), (p.rejected, False, p.rejected_model)):
            out.append(UnpairedExample(p.prompt, text, lab, p.confidence, f"{p.label_source}_pair",
                                       p.participant_id, p.task_id, p.turn_id, p.turn, model))
    return dedup_unpaired(out)


__all__ = ["build_feedback_kto", "build_feedback_pairs", "feedback_index", "pairs_as_unpaired"]
