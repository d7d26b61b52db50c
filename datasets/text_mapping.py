"""Gaze and pointer samples onto the words and sentences of a response.

Two sources of the mapping, one result (:func:`map_to_words`: per sample the response
``position``, the ``word`` index within that response and the word's ``char_start``; -1 = none):

* IFLLM: the recorder stored, per sample, the index of the character under it (``char_index`` of
  the ``hits`` stream); the word is found by character offset in the response text, reflowed into
  words (runs of non-space) and sentences here (:class:`TextUnits`). Some recordings count
  ``char_index`` from the rendered paragraph or list item, not the whole response: the sample's
  ``window`` (the text around the caret) re-anchors it (:func:`anchor_chars`).
* our site: the ``layout`` stream holds word boxes (px relative to the response element's content,
  scroll included) and element boxes (viewport px) over time; a viewport sample is first put into
  the response element under it (latest layout snapshot at or before the sample), then into the
  word box under it (optionally the nearest one within ``max_dist_px``, for noisy gaze).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

_WORD = re.compile(r"\S+")
#: a window matches its char_index when it occurs within this many characters of it
WINDOW_SLACK = 25
#: shortest window (stripped) that re-anchors a sample; shorter ones are too common to tell
MIN_ANCHOR_CHARS = 6
#: characters the IFLLM window reaches before the caret (it is the text from 10 before to 10 after)
WINDOW_BEFORE = 10
# a sentence ends at . ! ? (optionally followed by quotes/brackets) before white space, or at a line break
_SENT_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)|\n+")


@dataclass(frozen=True)
class TextUnits:
    """Words and sentences of a text by character offsets."""

    text: str
    word_start: np.ndarray  # int32 char offset of each word
    word_end: np.ndarray  # one past the last char
    word_sentence: np.ndarray  # sentence index of each word
    sentence_start: np.ndarray  # first word of each sentence

    @property
    def n_words(self) -> int:
        return len(self.word_start)

    @property
    def n_sentences(self) -> int:
        return len(self.sentence_start)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    def word_at(self, char_index: np.ndarray) -> np.ndarray:
        """Word index per character offset: the word containing it, or the word before it when the
        character is white space (the caret sits between words); -1 for offsets < 0 or past the end."""
        c = np.asarray(char_index, dtype=np.int64)
        w = np.searchsorted(self.word_start, c, side="right") - 1
        bad = (c < 0) | (c > self.n_chars) | (w < 0)
        return np.where(bad, -1, w).astype(np.int32)


@lru_cache(maxsize=4096)
def text_units(text: str) -> TextUnits:
    """Reflow ``text`` into words (runs of non-space) and sentences (split after . ! ? + space, or
    at line breaks — bullet items are sentences)."""
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    ws = np.array([s for s, _ in spans], dtype=np.int32)
    we = np.array([e for _, e in spans], dtype=np.int32)
    ends = np.array(sorted({m.end() for m in _SENT_END.finditer(text)}), dtype=np.int64)
    # sentence of a word: number of sentence ends at or before its start
    sent = np.searchsorted(ends, ws, side="right").astype(np.int32)
    # renumber densely (several ends may fall between two words)
    if len(sent):
        _, sent = np.unique(sent, return_inverse=True)
        sent = sent.astype(np.int32)
        first = np.flatnonzero(np.r_[True, sent[1:] != sent[:-1]]).astype(np.int32)
    else:
        first = np.zeros(0, dtype=np.int32)
    return TextUnits(text, ws, we, sent, first)


@dataclass
class WordHits:
    position: np.ndarray  # int8, -1 = not on a response
    word: np.ndarray  # int32, -1 = not on a word
    char_start: np.ndarray  # int32, -1 = not on a word
    char_index: np.ndarray | None = None  # int32: the character under the sample, -1 = none
    rel_x: np.ndarray | None = None  # px relative to the response element (scroll included), NaN outside
    rel_y: np.ndarray | None = None
    # by character offset: the samples' char_index after re-anchoring by their window (-1 =
    # unknown), before the word lookup (so also where no word is found)
    char_anchored: np.ndarray | None = None
    char_end: np.ndarray | None = None  # int32: one past the word's last character, -1 = not on a word

    def __len__(self) -> int:
        return len(self.position)


def _col(samples: Any, name: str) -> np.ndarray:
    if isinstance(samples, pa.Table):
        return samples.column(name).to_numpy(zero_copy_only=False)
    if isinstance(samples, pd.DataFrame):
        return samples[name].to_numpy()
    return np.asarray(samples[name])


def _has(samples: Any, name: str) -> bool:
    if isinstance(samples, pa.Table):
        return name in samples.column_names
    if isinstance(samples, pd.DataFrame):
        return name in samples.columns
    return name in samples


def map_to_words(samples: Any, layout: Any, *, scroll: Any = None, max_dist_px: float = 0.0,
                 turn: int | None = None) -> WordHits:
    """Per sample: response position, word index, word's first character (-1 = none).

    ``samples``: a table/DataFrame/mapping of columns. With ``position`` and ``char_index``
    columns (IFLLM ``hits`` rows) and ``layout`` the response texts (a sequence indexed by position,
    or a mapping position → text), words come from the character offsets, re-anchored by a
    ``window`` column where there is one (:func:`anchor_chars`). Otherwise ``samples``
    needs ``t, x, y`` (viewport px) and ``layout`` is a layout stream (see
    :data:`gazepref.schema.STREAMS`); ``scroll`` an optional scroll stream (``target`` per
    response element) whose offsets are added to the element-relative position; ``turn`` keeps
    only layout rows of that turn when the layout has a ``turn`` column.
    """
    if _has(samples, "char_index") and _has(samples, "position") and not _is_layout(layout):
        return _map_by_char(samples, layout)
    return _map_by_boxes(samples, layout, scroll, max_dist_px, turn)


def _is_layout(layout: Any) -> bool:
    return isinstance(layout, (pa.Table, pd.DataFrame))


def window_near(text: str, window: str, char_index: int, slack: int = WINDOW_SLACK) -> bool:
    """Whether ``window`` (the text the recorder saw around the caret) occurs in ``text`` within
    ``slack`` characters of ``char_index``."""
    return window in text[max(0, char_index - slack):char_index + slack]


def anchor_chars(text: str, char_index: np.ndarray, window: Sequence[Any],
                 min_chars: int = MIN_ANCHOR_CHARS) -> np.ndarray:
    """``char_index`` (positions in ``text``, -1 = none) checked against each sample's ``window``.

    A window of at least ``min_chars`` characters (stripped) that does not occur near its
    ``char_index`` (:func:`window_near`) re-anchors the sample: to the occurrence of the window
    nearest ``char_index``, at the caret's place in it (the window starts
    :data:`WINDOW_BEFORE` characters before the caret, fewer at the start of a paragraph); a
    window that occurs nowhere in the text makes the character unknown (-1). Shorter or missing
    windows leave ``char_index`` as it is."""
    ci = np.asarray(char_index, dtype=np.int64)
    out = ci.copy()
    idx = np.flatnonzero(ci >= 0)
    if not len(idx):
        return out
    # samples repeat (window, char_index) pairs: each distinct pair is looked at once
    wcode, wins = pd.factorize(np.asarray(window, dtype=object)[idx], use_na_sentinel=True)
    wins = list(wins)
    key = wcode.astype(np.int64) * (int(ci[idx].max()) + 1) + ci[idx]
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    found: dict[str, np.ndarray] = {}
    res = ci[idx][first].copy()
    for u, j in enumerate(first):
        raw = wins[wcode[j]] if wcode[j] >= 0 else None
        if not isinstance(raw, str):
            continue
        w = raw.strip()
        if len(w) < min_chars:
            continue
        c = int(ci[idx[j]])
        if window_near(text, w, c):
            continue
        if w not in found:
            at, k = [], text.find(w)
            while k >= 0:
                at.append(k)
                k = text.find(w, k + 1)
            found[w] = np.array(at, dtype=np.int64)
        starts = found[w]
        if not len(starts):
            res[u] = -1
            continue
        lead = len(raw) - len(raw.lstrip())  # white space the strip took off before the caret
        off = min(max(min(c, WINDOW_BEFORE) - lead, 0), len(w))
        res[u] = starts[np.argmin(np.abs(starts + off - c))] + off
    out[idx] = res[inv]
    return out


def anchor_positions(texts: Sequence[str] | Mapping[int, str], position: Any, char_index: Any,
                     window: Any) -> np.ndarray:
    """:func:`anchor_chars` for samples on several responses, each against its own text
    (``texts[position]``; samples on no listed text keep their ``char_index``)."""
    pos = np.asarray(position)
    ci = np.asarray(char_index, dtype=np.int64).copy()
    win = np.asarray(window, dtype=object)
    for p, text in (texts.items() if isinstance(texts, Mapping) else enumerate(texts)):
        m = (pos == p) & (ci >= 0)
        if m.any() and text is not None:
            ci[m] = anchor_chars(text, ci[m], win[m])
    return ci


def _map_by_char(samples: Any, texts: Sequence[str] | Mapping[int, str]) -> WordHits:
    pos = _col(samples, "position").astype(np.int64)
    ci = np.nan_to_num(_col(samples, "char_index").astype(np.float64), nan=-1).astype(np.int64)
    if _has(samples, "window"):  # char_index counted from a paragraph: re-anchored by the window
        ci = anchor_positions(texts, pos, ci, _col(samples, "window"))
    n = len(pos)
    word = np.full(n, -1, dtype=np.int32)
    cs = np.full(n, -1, dtype=np.int32)
    ce = np.full(n, -1, dtype=np.int32)
    items = texts.items() if isinstance(texts, Mapping) else enumerate(texts)
    for p, text in items:
        m = (pos == p) & (ci >= 0)
        if not m.any() or text is None:
            continue
        u = text_units(text)
        w = u.word_at(ci[m])
        word[m] = w
        cs[m] = np.where(w >= 0, u.word_start[np.maximum(w, 0)] if u.n_words else -1, -1)
        ce[m] = np.where(w >= 0, u.word_end[np.maximum(w, 0)] if u.n_words else -1, -1)
    position = np.where((pos >= 0) & (pos < 127), pos, -1).astype(np.int8)
    return WordHits(position, word, cs, char_index=np.where(word >= 0, ci, -1).astype(np.int32),
                    char_anchored=ci.astype(np.int32), char_end=ce)


def _columns(table: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns ``names`` of a table/DataFrame/mapping that has them, as numpy arrays with the
    values and dtypes ``to_pandas`` would give (integers with nulls as float64 with NaN)."""
    if isinstance(table, pa.Table):
        have = set(table.column_names)
        return {n: table.column(n).to_numpy(zero_copy_only=False) for n in names if n in have}
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    return {n: df[n].to_numpy() for n in names if n in df.columns}


def _response_position(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether the row is on a response, its position) from each row's ``target``
    (``"response:P"`` → P; any other or missing target is on none); each distinct target is
    parsed once."""
    codes, uniq = pd.factorize(target, use_na_sentinel=True)
    is_resp = np.array([str(u).startswith("response:") for u in uniq] + [False], dtype=bool)
    parsed = np.array([int(str(u).split(":")[1]) if r else 0 for u, r in zip(uniq, is_resp)] + [0],
                      dtype=np.int64)
    return is_resp[codes], parsed[codes]  # code -1 (missing) takes the trailing entry


def _sort_rows(rows: np.ndarray, t: np.ndarray, kind: str) -> np.ndarray:
    """``rows`` ordered by ``t[rows]`` as ``DataFrame.sort_values("t", kind=kind)`` orders them:
    the rows with a time sorted (the same numpy sort on the same values), then those without."""
    tt = t[rows]
    nan = pd.isna(tt)
    return np.concatenate([rows[~nan][np.argsort(tt[~nan], kind=kind)], rows[nan]])


def _scroll_by_position(scroll: Any) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per response position its scroll rows as (t, scroll_x, scroll_y) float64 arrays in time order."""
    sc = _columns(scroll, ("t", "target", "scroll_x", "scroll_y"))
    is_resp, pos = _response_position(sc["target"])
    out = {}
    for p, rows in _groups(pos, is_resp):
        rows = _sort_rows(rows, sc["t"], "quicksort")
        out[p] = tuple(sc[c][rows].astype(np.float64) for c in ("t", "scroll_x", "scroll_y"))
    return out


def _groups(keys: np.ndarray, valid: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(key, indices into ``keys`` in ascending order) for each distinct key where ``valid``,
    keys ascending."""
    idx = np.flatnonzero(valid)
    idx = idx[np.argsort(keys[idx], kind="stable")]
    cuts = np.flatnonzero(np.diff(keys[idx])) + 1
    return [(int(keys[g[0]]), g) for g in np.split(idx, cuts) if len(g)]


def _map_by_boxes(samples: Any, layout: Any, scroll: Any, max_dist_px: float, turn: int | None) -> WordHits:
    """Viewport samples onto response elements and their word boxes (see :func:`map_to_words`).

    The layout rows of the turn (and those without one) whose target is a response are split
    once into element rows, sorted by time, and word rows; per response position (ascending, the
    first one containing a sample wins) a sample is in the latest element box at or before it, and
    then on the nearest word box (within ``max_dist_px``) of the word snapshot it falls in: the
    latest one at or before it, the first one for samples before every snapshot."""
    t = _col(samples, "t").astype(np.float64)
    x = _col(samples, "x").astype(np.float64)
    y = _col(samples, "y").astype(np.float64)
    n = len(t)
    pos_out = np.full(n, -1, dtype=np.int8)
    word_out = np.full(n, -1, dtype=np.int32)
    cs_out = np.full(n, -1, dtype=np.int32)
    ci_out = np.full(n, -1, dtype=np.int32)
    ce_out = np.full(n, -1, dtype=np.int32)
    rx_out = np.full(n, np.nan)
    ry_out = np.full(n, np.nan)
    lay = _columns(layout, ("t", "target", "kind", "turn", "x", "y", "w", "h", "index", "char_start", "char_end"))
    rows = np.arange(len(lay["target"]))
    if turn is not None and "turn" in lay:
        rows = np.flatnonzero(pd.isna(lay["turn"]) | (lay["turn"] == turn))
    is_resp, row_pos = _response_position(lay["target"][rows])
    rows, row_pos = rows[is_resp], row_pos[is_resp]
    if not len(rows) or n == 0:
        return WordHits(pos_out, word_out, cs_out, ci_out, rx_out, ry_out, char_end=ce_out)
    # from here on the layout is its response rows, positions alongside, boxes and times float64
    lay = {c: (v[rows].astype(np.float64) if c in ("t", "x", "y", "w", "h") else v[rows]) for c, v in lay.items()}
    kind = lay["kind"]
    elems = _sort_rows(np.flatnonzero(kind == "element"), lay["t"], "stable")
    words = np.flatnonzero(kind == "word")
    scr = _scroll_by_position(scroll) if scroll is not None else {}
    lt, lx, ly, lw, lh = (lay[c] for c in ("t", "x", "y", "w", "h"))
    for p, ei in _groups(row_pos[elems], np.ones(len(elems), dtype=bool)):
        eg = elems[ei]
        k = np.searchsorted(lt[eg], t, side="right") - 1  # latest element box at or before the sample
        has = k >= 0
        kk = eg[np.maximum(k, 0)]
        ex, ey, ew, eh = lx[kk], ly[kk], lw[kk], lh[kk]
        inside = has & (x >= ex) & (x < ex + ew) & (y >= ey) & (y < ey + eh) & (pos_out < 0)
        if not inside.any():
            continue
        pos_out[inside] = p
        rx, ry = x - ex, y - ey
        if p in scr:
            st, sx, sy = scr[p]
            j = np.searchsorted(st, t, side="right") - 1
            ok = j >= 0
            rx = rx + np.where(ok, sx[np.maximum(j, 0)], 0.0)
            ry = ry + np.where(ok, sy[np.maximum(j, 0)], 0.0)
        rx_out[inside], ry_out[inside] = rx[inside], ry[inside]
        wg = words[row_pos[words] == p]
        if not len(wg):
            continue
        _words_in_snapshots(wg, lay, inside, t, rx, ry, max_dist_px, (word_out, cs_out, ci_out, ce_out))
    return WordHits(pos_out, word_out, cs_out, ci_out, rx_out, ry_out, char_end=ce_out)


def _words_in_snapshots(wg: np.ndarray, lay: Mapping[str, np.ndarray], inside: np.ndarray, t: np.ndarray,
                        rx: np.ndarray, ry: np.ndarray, max_dist_px: float,
                        out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Fill ``out`` (word, char_start, char_index, char_end) for the ``inside`` samples at
    element-relative ``rx, ry`` from the word rows ``wg`` of one response.

    A re-layout re-sends the word boxes: the rows of one time are a snapshot, valid from its time
    to the next snapshot's (the first one also before its time); each sample takes the nearest
    box of its snapshot (the first of equally near ones, in row order) within ``max_dist_px``."""
    word_out, cs_out, ci_out, ce_out = out
    wt = lay["t"][wg]
    snaps = np.unique(wt[~np.isnan(wt)])
    if not len(snaps):
        return
    boxes = dict(_groups(np.searchsorted(snaps, wt), ~np.isnan(wt)))
    s = np.maximum(np.searchsorted(snaps, t, side="right") - 1, 0)
    t_end = np.append(snaps[1:], np.inf)[s]
    lx, ly, lw, lh = (lay[c] for c in ("x", "y", "w", "h"))
    for i, sel in _groups(s, inside & (t < t_end)):  # NaN times are in no snapshot
        sw = wg[boxes[i]]
        bx, by, bw, bh = lx[sw], ly[sw], lw[sw], lh[sw]
        for chunk in np.array_split(sel, max(1, len(sel) // 2048 + 1)):
            px, py = rx[chunk, None], ry[chunk, None]
            ddx = np.maximum(np.maximum(bx - px, px - (bx + bw)), 0)
            ddy = np.maximum(np.maximum(by - py, py - (by + bh)), 0)
            d = np.hypot(ddx, ddy)
            best = np.argmin(d, axis=1)
            ok = d[np.arange(len(chunk)), best] <= max_dist_px
            hit = chunk[ok]
            b = best[ok]
            start, end = lay["char_start"][sw][b], lay["char_end"][sw][b]
            word_out[hit] = lay["index"][sw][b]
            cs_out[hit] = start
            ce_out[hit] = end
            # the character under the sample: interpolated across the word box's width
            frac = np.clip((rx[hit] - bx[b]) / np.maximum(bw[b], 1e-6), 0, 0.999)
            ci_out[hit] = (start + np.floor(frac * np.maximum(end - start, 1))).astype(np.int32)
