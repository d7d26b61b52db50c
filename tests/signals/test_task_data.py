"""Building a task's sample frames from IFLLM-style streams (``hits`` with ``char_index``)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from gazepref import schema
from gazepref.signals.task_data import from_ifllm
from gazepref.datasets.text_mapping import text_units

TEXT = "Intro line here.\n\nSecond paragraph talks about cats and dogs.\n\n- a list item\n- the later one ends it."


class _Rel:
    def __init__(self, turns):
        self._turns = turns

    def turns_by_task(self):
        return {"w/1": self._turns}


def test_from_ifllm_reanchors_paragraph_counted_chars_by_window():
    """A recorder that counted char_index from the rendered paragraph: the hits' windows put the
    samples back on the response's own characters (and words) before any feature sees them."""
    turn = schema.Turn("1", "w/1", "w", 0, "pointwise", "q", [schema.Response(0, "m", TEXT)], epoch_ms=0.0)
    para = TEXT.index("- the later")
    true_ci = np.arange(para, para + 20)
    n = len(true_ci)
    t = 1000.0 + 70.0 * np.arange(n)
    x, y = 200.0 + 8 * np.arange(n), np.full(n, 320.0)
    local = true_ci - para
    line = TEXT[para:]
    window = [line[max(0, c - 10):c + 10] for c in local]
    gaze = pa.table({"t": t, "x": x, "y": y, "epoch_ms": 1.7e12 + t, "turn": pa.array(np.zeros(n, np.int32))})
    hits = pa.table({"t": t, "source": ["gaze"] * n, "position": pa.array(np.zeros(n, np.int8)),
                     "x": x - 20, "y": y - 300, "char_index": pa.array(local, pa.int32()), "window": window,
                     "camera_ok": pa.array(np.ones(n, np.int8)), "epoch_ms": 1.7e12 + t,
                     "turn": pa.array(np.zeros(n, np.int32))})
    td = from_ifllm(_Rel([turn]), "w/1", streams={"gaze": gaze, "hits": hits})
    g = td.gaze
    assert len(g) > n // 2
    k = np.searchsorted(t, g.t)
    assert g.char.tolist() == true_ci[k].tolist()
    assert g.word.tolist() == text_units(TEXT).word_at(true_ci[k]).tolist()
