"""The feedback label sources of ``gazepref align`` (``feedback_pairs``, ``feedback_kto``).

Two functions the pipeline calls, so they can be registered as one label source each:

* :func:`mine` (the ``reward`` step): mine the source's conversations into ``feedback.parquet``
  (:func:`gazepref.signals.feedback_mining.mine_to_folder`);
* :func:`build` (the ``pairs`` step): read the conversations again and turn them and the mined
  levels into preference pairs or KTO examples (:mod:`gazepref.datasets.feedback_pairs`).

The source is anything :func:`gazepref.datasets.conversations.open_conversations` reads: a log
file or folder (OpenAI messages, ShareGPT, WildChat-style), a recording folder, a study slug.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import UserError



def check(label_source: str, algorithm: str, backend: str = "offline") -> None:
    """Configuration errors of a feedback label source (raised before anything runs)."""
    if backend not in ("offline", "llm"):
        raise UserError(f"unknown feedback_backend {backend!r} (offline or llm)")
    if label_source == "feedback_kto" and algorithm != "kto":
        raise UserError("label source 'feedback_kto' gives unpaired examples: use --algorithm kto "
                        "(or --label-source feedback_pairs for DPO)")


def mine(source: str, out: Path, data_cfg: Any, db: str | None = None, instance: str | None = None,
         progress: bool = False) -> dict[str, Any]:
    """Mine ``source`` into ``out/feedback.parquet``; the step's result (counts, no rows)."""
    from ..signals.feedback_mining import mine_to_folder

    s = mine_to_folder(source, out, backend=getattr(data_cfg, "feedback_backend", "offline"),
                       show_progress=progress, db=db, instance=instance)
    return {"mined": s["rows"], "by_level": s["by_level"], "by_category": s["by_category"], "read": s["read"],
            "path": s["table"]}


def build(source: str, mined: Path, data_cfg: Any, algorithm: str, db: str | None = None,
          instance: str | None = None):
    """``(items, stats, kind)``: the pairs (``kind="pairs"``) or KTO examples (``"unpaired"``)."""
    from ..datasets import feedback_pairs as F
    from ..datasets.conversations import open_conversations
    from ..datasets.preference import BuildStats
    from ..signals.feedback_mining import read_mined

    fb = F.feedback_index(read_mined(mined))
    convs = open_conversations(source, db=db, instance=instance)
    d = data_cfg
    stats = BuildStats()
    if d.label_source == "feedback_kto":
        items = F.build_feedback_kto(convs, fb, d.context_messages, desirable_level=d.feedback_desirable_level,
                                     min_confidence=d.min_confidence, stats=stats)
        return items, stats, "unpaired"
    pairs = F.build_feedback_pairs(convs, fb, d.context_messages, accept_level=d.feedback_accept_level,
                                   min_confidence=d.min_confidence, stats=stats)
    if algorithm == "kto":
        return F.pairs_as_unpaired(pairs), stats, "unpaired"
    return pairs, stats, "pairs"


__all__ = ["build", "check", "mine"]
