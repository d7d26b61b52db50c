"""Pairs and KTO examples from feedback levels: orientation, chains, what gives no pair, context, weights.

The levels are given here (no classifier): ``(conversation_id, turn) -> ordinal, confidence``; the
mining tests run the classifier in front of the same builders."""
from __future__ import annotations

import pytest

from gazepref.datasets.conversations import Conversation, Turn
from gazepref.datasets.feedback_pairs import (
    build_feedback_kto,
    build_feedback_pairs,
    feedback_index,
    pairs_as_unpaired,
)
from gazepref.datasets.preference import BuildStats


def conv(cid, *texts, user="u1"):
    """A chat alternating user / assistant, starting with the user; assistant turns at odd indices."""
    return Conversation(cid, [Turn("user" if i % 2 == 0 else "assistant", t, "" if i % 2 == 0 else f"m{i}")
                              for i, t in enumerate(texts)], user)


def fb(cid, *levels_confs):
    """Feedback on the assistant turns 1, 3, 5, ... of ``cid``: ``(level, confidence)`` or None."""
    return [{"conversation_id": cid, "turn": 2 * k + 1, "ordinal": lc[0], "confidence": lc[1]}
            for k, lc in enumerate(levels_confs) if lc is not None]


CHATS = [
    # rejected, revised, revision accepted by praise
    conv("a", "When did the wall fall?", "In 1991.", "Wrong, 1989.", "Yes: 1989.", "Thanks!", "Welcome."),
    # two rejections in a row, then accepted by moving on (level 3)
    conv("b", "Capital of Australia?", "Sydney.", "No.", "Melbourne.", "Still wrong, it's Canberra.", "Canberra.",
         "And its population?", "About 460,000."),
    # rejected, the revision is rejected too and the chat ends
    conv("c", "Q?", "bad", "No, wrong.", "still bad", "Wrong again.", user="u2"),
    # rejected, revised, but the chat ends: no evidence the revision was accepted
    conv("d", "Q2?", "bad2", "Wrong.", "better2", user=None),
    # a satisfied answer, then a neutral one
    conv("e", "Hi?", "Hello!", "Great, thanks.", "ok", "What next?", "Next.", user="u3"),
]
FEEDBACK = feedback_index(
    fb("a", (2, 0.8), (5, 0.9)) + fb("b", (1, 0.9), (2, 0.7), (3, 1.0)) + fb("c", (1, 0.9), (1, 0.8))
    + fb("d", (1, 0.6)) + fb("e", (5, 0.95), (3, 1.0)))


def test_pairs_prefer_the_accepted_revision_over_the_rejected_answer():
    st = BuildStats()
    pairs = build_feedback_pairs(CHATS, FEEDBACK, stats=st)
    got = {(p.task_id, p.chosen, p.rejected) for p in pairs}
    assert got == {("a", "Yes: 1989.", "In 1991."), ("b", "Canberra.", "Sydney."), ("b", "Canberra.", "Melbourne.")}
    a = next(p for p in pairs if p.task_id == "a")
    # the prompt is the chat up to the request the rejected answer replied to
    assert a.prompt == [{"role": "user", "content": "When did the wall fall?"}]
    assert (a.chosen_model, a.rejected_model, a.turn, a.label_source) == ("m3", "m1", 1, "feedback_pairs")
    assert a.confidence == pytest.approx(0.5 + 0.5 * (0.8 * 0.9) ** 0.5) and a.margin == 3.0
    b2 = next(p for p in pairs if p.rejected == "Melbourne.")
    assert [m["content"] for m in b2.prompt] == ["Capital of Australia?", "Sydney.", "No."]
    assert b2.participant_id == "u1" and b2.margin == 1.0
    row = a.to_row()  # TRL's conversational format, chosen = the revision
    assert row["chosen"] == [{"role": "assistant", "content": "Yes: 1989."}]
    assert row["rejected"] == [{"role": "assistant", "content": "In 1991."}]
    ex = st.extra
    assert ex["rejected_answers"] == 6 and ex["revision_accepted"] == 3
    assert ex["revision_rejected_again"] == 2  # b's Melbourne, c's still bad
    assert ex["revision_without_reaction"] == 1  # d: revised, but the chat ends
    assert ex["no_revision"] == 2  # c: the chat ends on a rejection (both rejected answers lack an accepted revision)
    assert st.kept == 3
    assert ex["below_min_confidence"] == ex["identical_revision"] == 0
    outcomes = ("revision_accepted", "below_min_confidence", "identical_revision", "revision_without_reaction",
                "no_revision")  # each rejected answer ends in exactly one
    assert sum(ex[k] for k in outcomes) == ex["rejected_answers"]


def test_accept_level_5_needs_explicit_satisfaction_and_confidence_filters():
    pairs = build_feedback_pairs(CHATS, FEEDBACK, accept_level=5)
    assert {(p.task_id, p.rejected) for p in pairs} == {("a", "In 1991.")}
    st = BuildStats()
    sure = build_feedback_pairs(CHATS, FEEDBACK, min_confidence=0.95, stats=st)
    assert sure == [p for p in build_feedback_pairs(CHATS, FEEDBACK) if p.confidence >= 0.95]
    assert st.extra["below_min_confidence"] == 3 - len(sure) > 0  # counted, as every other outcome


def test_the_revision_must_follow_the_reaction():
    """A user who writes twice after the rejected answer: the next answer is no revision of it."""
    c = Conversation("f", [Turn("user", "Q?"), Turn("assistant", "bad"), Turn("user", "Wrong."),
                           Turn("user", "Hello?"), Turn("assistant", "good"), Turn("user", "Thanks!")], "u1")
    st = BuildStats()
    fbk = feedback_index([{"conversation_id": "f", "turn": 1, "ordinal": 1, "confidence": 1.0},
                          {"conversation_id": "f", "turn": 4, "ordinal": 5, "confidence": 1.0}])
    assert build_feedback_pairs([c], fbk, stats=st) == [] and st.extra["no_revision"] == 1


def test_context_messages_trim_the_chat_before_the_request():
    pairs = build_feedback_pairs(CHATS, FEEDBACK, context_messages=1)
    b2 = next(p for p in pairs if p.rejected == "Melbourne.")
    assert [m["content"] for m in b2.prompt] == ["No."]  # the context starts on a user message
    b2 = next(p for p in build_feedback_pairs(CHATS, FEEDBACK, context_messages=0) if p.rejected == "Melbourne.")
    assert [m["content"] for m in b2.prompt] == ["No."]


def test_kto_examples_desirable_satisfied_undesirable_rejected_with_confidence():
    st = BuildStats()
    ex = build_feedback_kto(CHATS, FEEDBACK, stats=st)
    got = {(e.task_id, e.completion): (e.label, e.confidence) for e in ex}
    assert got == {
        ("a", "In 1991."): (False, 0.8), ("a", "Yes: 1989."): (True, 0.9),
        ("b", "Sydney."): (False, 0.9), ("b", "Melbourne."): (False, 0.7),
        ("c", "bad"): (False, 0.9), ("c", "still bad"): (False, 0.8), ("d", "bad2"): (False, 0.6),
        ("e", "Hello!"): (True, 0.95)}
    assert st.extra["neutral_skipped"] == 2 and st.extra["no_reaction"] == 4
    d = next(e for e in ex if e.task_id == "d")
    assert d.participant_id == "conversation:d"  # no user id: the conversation is the split's group
    assert d.prompt == [{"role": "user", "content": "Q2?"}] and d.label_source == "feedback_kto"
    assert d.to_row()["completion"] == [{"role": "assistant", "content": "bad2"}]
    # level 4 (engagement) counts as desirable only when asked
    fb4 = feedback_index(fb("e", (4, 0.7), None))
    assert [e.label for e in build_feedback_kto(CHATS[4:], fb4)] == []
    assert [(e.completion, e.label) for e in build_feedback_kto(CHATS[4:], fb4, desirable_level=4)] == [("Hello!", True)]
    assert len(build_feedback_kto(CHATS, FEEDBACK, min_confidence=0.85)) == 4  # 0.9, 0.9, 0.9, 0.95
    with pytest.raises(ValueError):
        build_feedback_kto(CHATS, FEEDBACK, desirable_level=2)


def test_pairs_as_unpaired_keeps_the_orientation():
    pairs = build_feedback_pairs(CHATS, FEEDBACK)
    ex = pairs_as_unpaired(pairs)
    chosen = {p.chosen for p in pairs}
    rejected = {p.rejected for p in pairs}
    assert {e.completion for e in ex if e.label} == chosen
    assert {e.completion for e in ex if not e.label} == rejected
    assert {e.label_source for e in ex} == {"feedback_pairs_pair"}
