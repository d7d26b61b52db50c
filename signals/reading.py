"""Reading measures per response and per sentence from gaze fixations (and dwell measures from
any sample stream, used for the pointer too).

Definitions (all within one turn; a *visit* is a run of consecutive fixations on the same region —
response 0, response 1 or the prompt — in the turn's fixation sequence):

* dwell: sum of sample durations (:func:`gazepref.signals.gaze_events.sample_durations`);
* first-fixation duration (FFD) of a word: duration of the first fixation on it; gaze duration
  (GD): the summed durations of the first run of consecutive fixations on it;
* first pass on a response: the fixations of its first visit;
* regression: a fixation on an earlier word than the previous fixation of the same visit;
* coverage: share of the response's words (sentences) with at least one fixation;
* depth: the furthest character reached by any sample, as a share of the response's length;
* reading speed: distinct words fixated per minute of fixation time on the response.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import gaze_events, regions
from .task_data import SampleFrame
from ..datasets.text_mapping import TextUnits

NAN = float("nan")


@dataclass
class FixTable:
    turn: np.ndarray
    region: np.ndarray
    word: np.ndarray
    sent: np.ndarray
    char: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    dur: np.ndarray
    x: np.ndarray
    y: np.ndarray
    segment: np.ndarray  # segment of the first sample (fixations of one segment are contiguous in time)
    start: np.ndarray  # int64, index of the first sample in the frame given to :func:`fixations`
    end: np.ndarray  # int64, index of the last sample (inclusive)

    def __len__(self) -> int:
        return len(self.turn)

    def subset(self, m: np.ndarray) -> "FixTable":
        return FixTable(**{k: v[m] for k, v in self.__dict__.items()})


def fixations(frame: SampleFrame, **idt_params) -> FixTable:
    """I-DT fixations of a gaze frame, each with its majority region and the word/sentence under
    the mean character of its on-text samples in that region."""
    fx = gaze_events.detect_fixations_idt(frame.t, frame.x, frame.y, frame.segment, frame.dur, **idt_params)
    nf = len(fx)
    if nf == 0:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int32)
        zl = zi.astype(np.int64)
        return FixTable(zi, zi.astype(np.int8), zi, zi, zi, z, z, z, z, z, zl, zl, zl)
    fid = gaze_events.fixation_of_sample(fx, len(frame))
    inf = fid >= 0
    counts = np.zeros((nf, regions.N_REGIONS))
    np.add.at(counts, (fid[inf], frame.region[inf].astype(np.int64)), frame.dur[inf])
    reg = np.argmax(counts, axis=1).astype(np.int8)
    turn = frame.turn[fx.start]
    on = inf & (frame.char >= 0) & (frame.region == reg[np.maximum(fid, 0)])
    csum = np.bincount(fid[on], weights=frame.char[on], minlength=nf)
    cnt = np.bincount(fid[on], minlength=nf)
    char = np.where(cnt > 0, np.round(csum / np.maximum(cnt, 1)), -1).astype(np.int32)
    # the word/sentence of that character: take the on-text sample closest to it
    word = np.full(nf, -1, dtype=np.int32)
    sent = np.full(nf, -1, dtype=np.int32)
    if on.any():
        d = np.abs(frame.char[on] - char[fid[on]])
        order = np.lexsort((d, fid[on]))
        f_sorted = fid[on][order]
        first = np.flatnonzero(np.r_[True, f_sorted[1:] != f_sorted[:-1]])
        pick = np.flatnonzero(on)[order[first]]
        word[f_sorted[first]] = frame.word[pick]
        sent[f_sorted[first]] = frame.sent[pick]
    return FixTable(turn, reg, word, sent, char, fx.onset, fx.offset, fx.duration, fx.x, fx.y,
                    frame.segment[fx.start], fx.start, fx.end)


def visit_ids(region: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Visit number per fixation: increases whenever the region or the turn changes."""
    if len(region) == 0:
        return np.zeros(0, dtype=np.int64)
    brk = np.r_[True, (region[1:] != region[:-1]) | (turn[1:] != turn[:-1])]
    return np.cumsum(brk) - 1


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distinct values of ``a`` over the distinct (a, b) pairs (one entry per pair), sorted."""
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    if len(a) == 0:
        return a
    base = int(b.max()) + 1
    return np.unique(a * base + b) // base


def dwell_measures(frame: SampleFrame, pos: int, units: TextUnits, t0: float, prefix: str) -> dict[str, float]:
    """Sample-based measures for one response in one turn (``frame`` already cut to the turn)."""
    m = frame.region == pos
    on = m & (frame.word >= 0)
    n = max(units.n_words, 1)
    out = {
        f"{prefix}dwell_ms": float(frame.dur[m].sum()),
        f"{prefix}text_ms": float(frame.dur[on].sum()),
        f"{prefix}word_cov": float(len(np.unique(frame.word[on])) / n) if units.n_words else NAN,
        f"{prefix}depth": float(frame.char[on].max() / max(units.n_chars, 1)) if on.any() else 0.0,
        f"{prefix}first_entry_ms": float(frame.t[m][0] - t0) if m.any() else NAN,
    }
    runs = np.r_[m[:1], m[1:] & ~m[:-1]] if len(m) else m
    out[f"{prefix}visits"] = float(runs.sum())
    return out


def response_gaze_measures(fix: FixTable, vis: np.ndarray, pos: int, units: TextUnits) -> dict[str, float]:
    """Fixation-based reading measures of one response in one turn (``fix``, ``vis`` cut to the
    turn, in time order)."""
    m = fix.region == pos
    nf = int(m.sum())
    out: dict[str, float] = {"g_fix_n": float(nf), "g_fix_ms": float(fix.dur[m].sum())}
    keys = ("g_fix_mean_ms", "g_first_fix_ms", "g_first_pass_ms", "g_word_cov", "g_sent_cov",
            "g_word_ffd_ms", "g_word_gd_ms", "g_regressions", "g_regression_rate", "g_reread_word_share",
            "g_read_wpm", "g_sent_first_share", "g_sent_last_share", "g_sent_reread_share")
    if nf == 0:
        out.update({k: NAN for k in keys})
        out["g_regressions"] = 0.0
        out["g_word_cov"] = out["g_sent_cov"] = 0.0 if units.n_words else NAN
        return out
    idx = np.flatnonzero(m)
    d = fix.dur[idx]
    out["g_fix_mean_ms"] = float(d.mean())
    out["g_first_fix_ms"] = float(d[0])
    first_visit = vis[idx[0]]
    out["g_first_pass_ms"] = float(fix.dur[(vis == first_visit)].sum())
    w, s, v = fix.word[idx], fix.sent[idx], vis[idx]
    onw = w >= 0
    if units.n_words:
        uw = np.unique(w[onw])
        out["g_word_cov"] = len(uw) / units.n_words
        us = np.unique(s[onw & (s >= 0)])
        out["g_sent_cov"] = len(us) / max(units.n_sentences, 1)
    else:
        uw = np.zeros(0, dtype=np.int32)
        out["g_word_cov"] = out["g_sent_cov"] = NAN
    if onw.any():
        ww, dd, vv = w[onw], d[onw], v[onw]
        gi = idx[onw]
        _, first = np.unique(ww, return_index=True)
        out["g_word_ffd_ms"] = float(dd[first].mean())
        # gaze duration: the run of consecutive fixations (in the whole sequence) starting at the first
        run_brk = np.r_[True, (ww[1:] != ww[:-1]) | (gi[1:] != gi[:-1] + 1)]
        run = np.cumsum(run_brk) - 1
        run_sum = np.bincount(run, weights=dd)
        out["g_word_gd_ms"] = float(run_sum[run[first]].mean())
        same_visit = (vv[1:] == vv[:-1]) & (ww[1:] != ww[:-1])
        reg = same_visit & (ww[1:] < ww[:-1])
        out["g_regressions"] = float(reg.sum())
        out["g_regression_rate"] = float(reg.sum() / same_visit.sum()) if same_visit.any() else NAN
        per_word = np.bincount(np.searchsorted(uw_all := np.unique(ww), _pairs(ww, vv)), minlength=len(uw_all))
        out["g_reread_word_share"] = float((per_word >= 2).mean())
        fix_min = dd.sum() / 60000.0
        out["g_read_wpm"] = float(len(uw) / fix_min) if fix_min > 0 else NAN
        ss = s[onw]
        if units.n_sentences and (ss >= 0).any():
            sd = np.bincount(ss[ss >= 0], weights=dd[ss >= 0], minlength=units.n_sentences)
            tot = sd.sum()
            out["g_sent_first_share"] = float(sd[0] / tot) if tot > 0 else NAN
            out["g_sent_last_share"] = float(sd[units.n_sentences - 1] / tot) if tot > 0 else NAN
            per_sent = np.bincount(np.searchsorted(np.unique(ss[ss >= 0]), _pairs(ss[ss >= 0], vv[ss >= 0])))
            out["g_sent_reread_share"] = float((per_sent >= 2).mean())
        else:
            out["g_sent_first_share"] = out["g_sent_last_share"] = out["g_sent_reread_share"] = NAN
    else:
        for k in ("g_word_ffd_ms", "g_word_gd_ms", "g_regression_rate", "g_reread_word_share", "g_read_wpm",
                  "g_sent_first_share", "g_sent_last_share", "g_sent_reread_share"):
            out[k] = NAN
        out["g_regressions"] = 0.0
    return out


def sentence_measures(fix: FixTable, vis: np.ndarray, gaze: SampleFrame, pos: int, units: TextUnits) -> dict[str, np.ndarray]:
    """One row per sentence of one response in one turn: words, fixations, fixation time, first
    fixation duration, visits with a fixation, word coverage, gaze and pointer dwell."""
    ns = units.n_sentences
    rows = {"sentence": np.arange(ns), "n_words": np.bincount(units.word_sentence, minlength=ns)}
    m = (fix.region == pos) & (fix.sent >= 0)
    s = fix.sent[m]
    rows["g_fix_n"] = np.bincount(s, minlength=ns)[:ns].astype(float)
    rows["g_fix_ms"] = np.bincount(s, weights=fix.dur[m], minlength=ns)[:ns]
    ffd = np.full(ns, np.nan)
    if len(s):
        _, first = np.unique(s, return_index=True)
        ffd[s[first]] = fix.dur[m][first]
    rows["g_first_fix_ms"] = ffd
    rows["g_visits"] = np.bincount(_pairs(s, vis[m]), minlength=ns)[:ns].astype(float)
    cov = np.zeros(ns)
    if len(s):
        cov = np.bincount(_pairs(s, fix.word[m] + 1), minlength=ns)[:ns] / np.maximum(rows["n_words"], 1)
    rows["g_word_cov"] = cov
    gm = (gaze.region == pos) & (gaze.sent >= 0)
    rows["g_dwell_ms"] = np.bincount(gaze.sent[gm], weights=gaze.dur[gm], minlength=ns)[:ns]
    return rows
