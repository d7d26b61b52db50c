"""The derive step: the turn on screen and the word under each sample, added once per task.

Every reader (:class:`gazepref.datasets.ifllm.IFLLMRelease`,
:class:`gazepref.datasets.recording.ParquetRecording`,
:class:`gazepref.datasets.store_recording.StoreRecording`) hands its raw streams and the task's
turns to :func:`derive_streams`, so ``Recording.streams(task_id)`` returns derived streams and
everything downstream (features, plots, the IFLLM-layout export, the dashboard) reads these
columns instead of recomputing them:

* every stream: ``turn`` (int32) — the last turn shown at or before the sample, by clock
  (:func:`assign_turns`); -1 before the first turn. A ``turn`` the stream already carries (the
  layout's own, or one a Parquet export kept from its reader) wins where it has a value.
* ``gaze`` and ``mouse`` (:data:`WORD_COLUMNS`): ``position`` (int8, the response box the sample
  is in, -1 none), ``word`` (int32, word index in that response's text, -1 none), ``char_index``
  (int32, the character under the sample, -1 unknown), ``char_start`` / ``char_end`` (int32, the
  word's characters, -1 none), ``rel_x`` / ``rel_y`` (float64 px relative to the response box,
  scroll included; NaN outside). Gaze also gets ``camera_ok`` (int8: IFLLM's ``camera_green``; the
  site's from its flags, :func:`camera_ok_from_flags`).

Two sources of the words, one result:

* our site (a ``layout`` stream with element and word boxes, plus ``scroll``): each sample of
  turn k is put into the response element and word box under it among turn k's layout rows
  (:func:`words_from_layout`, through :func:`gazepref.datasets.text_mapping.map_to_words`);
* the IFLLM release (a ``hits`` stream: its ``rel_*`` rows with ``char_index`` and ``window``):
  the in-box rows are matched to the samples on ``t``, the character re-anchored by its window
  where the recorder counted it from a paragraph, and the word looked up in the turn's response
  text (:func:`words_from_hits`). Turns come from the epoch clock with the reader's whole-hour
  offset fix (:func:`gazepref.datasets.ifllm.detect_hour_offset`).

:func:`rel_rows` writes the derived word columns back in IFLLM's ``rel_*`` form (the ``hits``
stream) for the IFLLM-layout export and for code that reads that form.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from .text_mapping import map_to_words

#: streams that get the word under each sample
SAMPLE_STREAMS = ("gaze", "mouse")
#: columns :func:`derive_streams` adds to gaze and mouse, with their types
WORD_COLUMNS: dict[str, pa.DataType] = {
    "position": pa.int8(), "word": pa.int32(), "char_index": pa.int32(), "char_start": pa.int32(),
    "char_end": pa.int32(), "rel_x": pa.float64(), "rel_y": pa.float64(),
}
#: every column the derive step may add (``turn`` on every stream; ``camera_ok`` on gaze: IFLLM's
#: camera_green, the site's from its flags)
DERIVED_COLUMNS = ("turn", *WORD_COLUMNS, "camera_ok")


# --------------------------------------------------------------------------- turns


def assign_turns(times: Any, starts: Any) -> np.ndarray:
    """Index of the last turn whose start is at or before each time (-1 before the first turn).

    ``times`` and ``starts`` on the same clock (task clock ``t`` or epoch ms); ``starts`` in turn
    order. A NaN start (a broken timestamp, a turn never shown) never starts a turn — its samples
    stay with the turn before. NaN times get -1.
    """
    e = np.asarray(times, dtype=np.float64)
    s = np.asarray(starts, dtype=np.float64)
    out = np.full(len(e), -1, dtype=np.int32)
    valid = np.flatnonzero(~np.isnan(s))
    if len(valid) == 0:
        return out
    order = valid[np.argsort(s[valid], kind="stable")]
    pos = np.searchsorted(s[order], e, side="right") - 1
    ok = (pos >= 0) & ~np.isnan(e)
    out[ok] = order[pos[ok]]
    return out


def turn_starts(turns: Sequence[schema.Turn], clock: str = "t", offset_ms: float = 0.0) -> np.ndarray:
    """The turns' shown times on ``clock``: ``"t"`` (``Turn.t_shown``, task clock) or
    ``"epoch_ms"`` (``Turn.epoch_ms`` plus ``offset_ms``); NaN where unknown."""
    if clock == "t":
        return np.array([np.nan if tr.t_shown is None else tr.t_shown for tr in turns], dtype=np.float64)
    if clock == "epoch_ms":
        return np.array([np.nan if tr.epoch_ms is None else tr.epoch_ms + offset_ms for tr in turns],
                        dtype=np.float64)
    raise ValueError(f"unknown clock {clock!r}; expected 't' or 'epoch_ms'")


def default_clock(turns: Sequence[schema.Turn]) -> str:
    """``"t"`` when any turn has a shown time on the task clock (our site, our exports), else
    ``"epoch_ms"`` (the IFLLM release: query timestamps only)."""
    return "t" if any(tr.t_shown is not None for tr in turns) else "epoch_ms"


def _np(tb: pa.Table, name: str, dtype: Any = np.float64) -> np.ndarray:
    return tb.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _has_values(tb: pa.Table, name: str) -> bool:
    return name in tb.column_names and tb.column(name).null_count < tb.num_rows


def add_turns(table: pa.Table, starts: np.ndarray, clock: str = "t") -> pa.Table:
    """``table`` with an int32 ``turn`` column by clock (:func:`assign_turns` on column ``clock``);
    a ``turn`` column already there keeps its values and is filled where null."""
    if clock in table.column_names:
        derived = pa.array(assign_turns(_np(table, clock), starts), pa.int32())
    else:
        derived = pa.array(np.full(table.num_rows, -1, dtype=np.int32))
    idx = table.schema.get_all_field_indices("turn")
    if not idx:
        return table.append_column("turn", derived)
    own = table.column(idx[0]).cast(pa.int32())
    for i in sorted(idx, reverse=True):
        table = table.remove_column(i)
    merged = own if own.null_count == 0 else pc.coalesce(own, derived)
    return table.append_column("turn", merged)


# --------------------------------------------------------------------------- words


def _empty_words(n: int) -> dict[str, np.ndarray]:
    return {"position": np.full(n, -1, np.int8), "word": np.full(n, -1, np.int32),
            "char_index": np.full(n, -1, np.int32), "char_start": np.full(n, -1, np.int32),
            "char_end": np.full(n, -1, np.int32), "rel_x": np.full(n, np.nan), "rel_y": np.full(n, np.nan)}


def words_from_layout(t: np.ndarray, x: np.ndarray, y: np.ndarray, turn: np.ndarray, layout: pa.Table,
                      scroll: pa.Table | None = None, max_dist_px: float = 0.0) -> dict[str, np.ndarray]:
    """Our site: the word under each viewport sample from the layout's element and word boxes.

    A sample of turn k is mapped with turn k's layout rows (rows without a turn serve every turn);
    samples before the first turn (-1) are on no response."""
    n = len(t)
    out = _empty_words(n)
    if layout is None or layout.num_rows == 0 or n == 0:
        return out
    lay = layout.to_pandas()
    for k in np.unique(turn[turn >= 0]):
        m = turn == k
        wh = map_to_words({"t": t[m], "x": x[m], "y": y[m]}, lay, scroll=scroll, max_dist_px=max_dist_px,
                          turn=int(k))
        out["position"][m], out["word"][m] = wh.position, wh.word
        out["char_index"][m], out["char_start"][m], out["char_end"][m] = wh.char_index, wh.char_start, wh.char_end
        out["rel_x"][m], out["rel_y"][m] = wh.rel_x, wh.rel_y
    return out


def _match_on_t(t: np.ndarray, ht: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit rows that match a sample, the sample each matches): exact ``t``; with several samples
    at one time, the first in time order."""
    n = len(t)
    order = np.argsort(t, kind="stable")
    st = t[order]
    j = np.searchsorted(st, ht)
    jj = np.minimum(j, n - 1)
    ok = (j < n) & (st[jj] == ht)
    return np.flatnonzero(ok), order[jj[ok]]


def words_from_hits(t: np.ndarray, turn: np.ndarray, hits: pa.Table | None, source: str,
                    turns: Sequence[schema.Turn]) -> dict[str, np.ndarray]:
    """The IFLLM release: the word under each ``source`` sample from the ``hits`` rows (``rel_*``).

    An in-box row (``x >= 0``) at a sample's ``t`` gives its position, box-relative x/y and
    ``char_index``; the character is re-anchored by the row's ``window`` where the recorder
    counted it from a paragraph (:func:`gazepref.datasets.text_mapping.anchor_chars`; -1 where
    the window is not in the response) and looked up in the text of the sample's turn. Gaze also
    gets ``camera_ok`` (every ``rel_gaze`` row of position 0 carries it; -1 unknown)."""
    n = len(t)
    out = _empty_words(n)
    window = np.full(n, None, dtype=object)
    if source == "gaze":
        out["camera_ok"] = np.full(n, -1, dtype=np.int8)
    if hits is None or hits.num_rows == 0 or n == 0:
        return out
    src = pc.equal(hits.column("source"), source)
    h = hits.filter(pc.and_(src, pc.greater_equal(hits.column("x"), 0)))
    if h.num_rows:
        rows, at = _match_on_t(t, _np(h, "t"))
        # later rows win where two rows match one sample (as they are written in row order)
        out["position"][at] = _np(h, "position", np.int8)[rows]
        out["char_index"][at] = _np(h, "char_index", np.int32)[rows]
        out["rel_x"][at] = _np(h, "x")[rows]
        out["rel_y"][at] = _np(h, "y")[rows]
        if "window" in h.column_names:
            window[at] = h.column("window").to_numpy(zero_copy_only=False)[rows]
    if source == "gaze" and "camera_ok" in hits.column_names:
        hg = hits.filter(pc.and_(src, pc.equal(hits.column("position"), 0)))
        if hg.num_rows:
            rows, at = _match_on_t(t, _np(hg, "t"))
            out["camera_ok"][at] = _np(hg, "camera_ok", np.int8)[rows]
    pos, char = out["position"], out["char_index"]
    for k, tr in enumerate(turns):
        m = turn == k
        if not m.any():
            continue
        texts = [r.text for r in tr.responses]
        wh = map_to_words({"position": pos[m], "char_index": char[m], "window": window[m]}, texts)
        char[m] = wh.char_anchored
        out["word"][m], out["char_start"][m], out["char_end"][m] = wh.word, wh.char_start, wh.char_end
    return out


def _with_columns(table: pa.Table, cols: Mapping[str, np.ndarray]) -> pa.Table:
    for name, values in cols.items():
        typ = WORD_COLUMNS.get(name, pa.int8())
        arr = pa.array(values, typ)
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def is_derived(streams: Mapping[str, pa.Table]) -> bool:
    """Whether ``streams`` already went through :func:`derive_streams`."""
    return all("turn" in tb.column_names for tb in streams.values()) and all(
        "word" in streams[s].column_names for s in SAMPLE_STREAMS if s in streams)


def derive_streams(streams: Mapping[str, pa.Table], turns: Sequence[schema.Turn], *, clock: str | None = None,
                   offset_ms: float = 0.0) -> dict[str, pa.Table]:
    """One task's streams with ``turn`` on every stream and the word columns on gaze and mouse.

    ``turns``: the task's turns in index order. ``clock``: which clock the turns' shown times
    are on (:func:`turn_starts`; default :func:`default_clock`); ``offset_ms`` is added to the
    turns' epoch times (IFLLM's whole-hour fix). Idempotent: derived streams come back as they
    are. Words come from the ``layout`` stream when it holds boxes, else from ``hits``."""
    if is_derived(streams):
        return dict(streams)
    turns = list(turns)
    clock = clock or default_clock(turns)
    starts = turn_starts(turns, clock, offset_ms)
    out = {name: add_turns(tb, starts, clock) for name, tb in streams.items()}
    layout, hits = out.get("layout"), out.get("hits")
    by_layout = layout is not None and layout.num_rows > 0
    for name in SAMPLE_STREAMS:
        tb = out.get(name)
        if tb is None:
            continue
        t, turn = _np(tb, "t"), _np(tb, "turn", np.int32)
        if by_layout:
            cols = words_from_layout(t, _np(tb, "x"), _np(tb, "y"), turn, layout, out.get("scroll"))
        else:
            cols = words_from_hits(t, turn, hits, name, turns)
        if name == "gaze" and "flags" in tb.column_names and (cols.get("camera_ok", np.int8(-1)) == -1).all():
            cols["camera_ok"] = camera_ok_from_flags(tb.column("flags"))  # the site's gaze: no camera_green, its flags
        out[name] = _with_columns(tb, cols)
    return out


#: a site gaze row's flags that say the camera did not show the participant's face usably: no
#: face, several faces, too dark a picture, a frame the server could not process
CAMERA_NOT_OK = schema.GazeFlag.NO_FACE | schema.GazeFlag.MULTIPLE_FACES | schema.GazeFlag.TOO_DARK | \
    schema.GazeFlag.DROPPED


def camera_ok_from_flags(flags: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``camera_ok`` (IFLLM's ``camera_green``: the face in view as the camera check wants it) of
    the site's gaze rows from their flags: 1 without any of :data:`CAMERA_NOT_OK`, 0 with one,
    -1 where a row has no flags."""
    f = pc.fill_null(flags, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(f < 0, -1, np.where((f & CAMERA_NOT_OK) == 0, 1, 0)).astype(np.int8)


def strip_derived(stream: str, table: pa.Table) -> pa.Table:
    """``table`` without the derived columns the stream's schema does not hold (``turn`` is
    kept: an IFLLM turn needs the reader's clock fix to be found again)."""
    drop = [c for c in DERIVED_COLUMNS if c != "turn" and c in table.column_names
            and c not in schema.STREAMS[stream].names]
    return table.drop_columns(drop) if drop else table


# --------------------------------------------------------------------------- IFLLM's rel_* form


def rel_rows(streams: Mapping[str, pa.Table], turns: Sequence[schema.Turn], positions: Sequence[int] = (0, 1),
             window: int = 20) -> pa.Table | None:
    """The ``hits`` stream (IFLLM's ``rel_*`` rows) of derived streams: the source's own where it
    has one (the IFLLM release), else written from the gaze and mouse word columns — one row per
    sample (with a position) and response position: x/y relative to the box (-1, -1 outside), the
    character under the sample (-1 when not on a word) and up to ``window`` characters of the
    response text around it. Has a ``turn`` column; None when there are no samples."""
    if "hits" in streams:
        return streams["hits"]
    texts = {(k, r.position): r.text for k, tr in enumerate(turns) for r in tr.responses}
    parts = []
    for source in SAMPLE_STREAMS:
        tb = streams.get(source)
        if tb is None or tb.num_rows == 0 or "word" not in tb.column_names:
            continue
        x, y = _np(tb, "x"), _np(tb, "y")
        keep = np.isfinite(x) & np.isfinite(y)
        t = _np(tb, "t")[keep]
        if not len(t):
            continue
        turn = _np(tb, "turn", np.int64)[keep]
        pos = _np(tb, "position", np.int64)[keep]
        char = np.where(_np(tb, "word", np.int64)[keep] >= 0, _np(tb, "char_index", np.int64)[keep], -1)
        rx, ry = _np(tb, "rel_x")[keep], _np(tb, "rel_y")[keep]
        epoch = _np(tb, "epoch_ms")[keep] if "epoch_ms" in tb.column_names else np.full(len(t), np.nan)
        text_window = np.full(len(t), None, dtype=object)
        for i in np.flatnonzero(char >= 0):
            text = texts.get((int(turn[i]), int(pos[i])))
            if text is not None:
                c = int(char[i])
                text_window[i] = text[max(0, c - window // 2): c + window // 2]
        for p in positions:
            on = pos == p
            parts.append(pd.DataFrame({
                "t": t, "source": source, "position": np.int8(p),
                "x": np.where(on, rx, -1.0), "y": np.where(on, ry, -1.0),
                "char_index": np.where(on, char, -1).astype(np.int32), "window": np.where(on, text_window, None),
                "camera_ok": (_np(tb, "camera_ok", np.int8)[keep] if "camera_ok" in tb.column_names
                              else np.int8(-1)),
                "epoch_ms": epoch, "turn": turn.astype(np.int32),
            }))
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True).sort_values(["t", "source", "position"], kind="stable",
                                                         ignore_index=True)
    turn_col = pa.array(df.pop("turn").to_numpy(), pa.int32())
    table = schema.conform("hits", pa.Table.from_pandas(df, preserve_index=False))
    return table.append_column("turn", turn_col)
