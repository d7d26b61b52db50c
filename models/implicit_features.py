"""Leakage-free implicit-feedback features per pairwise comparison, computed from the reader's
``hits`` stream (gaze / pointer samples relative to the response boxes).

Only samples **inside a response box** of the turn being predicted are used: positions on or near
the rating/choice controls (below the boxes) never enter, and nothing from other turns does (no
task-level aggregates). No "last side looked at" measure is computed either: the pointer's final
in-box position on its way down to the *Left | Right* buttons would give the click away.

Per source (``gaze``, ``mouse``) and response, within the turn: dwell (ms, each sample standing for
the time to the next one, capped at 500 ms), dwell on text, text coverage (share of 20-character
blocks visited), reading depth (90th percentile of the visited character offset / length), visits
and which box was entered first. Pairwise columns (``<source>_d_<measure>``) are *left minus right*
(or a centred left share), so swapping sides negates them; ``<source>_s_<measure>`` columns are
symmetric context (amount of data, turn time), only useful in interactions.

The signal-processor's richer table (``gazepref.signals.features``, issue 5) is used instead when it
is importable and ``source="signals"`` is asked for (see :func:`implicit_table`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import UserError
from ..datasets.derive import rel_rows
from ..datasets.recording import turns_by_task

SOURCES = ("gaze", "mouse")
MAX_DT_MS = 500.0
BLOCK = 20


def _side_measures(t: np.ndarray, pos: np.ndarray, char: np.ndarray, lens: tuple[int, int]) -> dict[str, float]:
    """``t`` sorted unique sample times of one source in one turn; ``pos`` the box (0/1, -1 none)."""
    out: dict[str, float] = {}
    if len(t) == 0:
        return out
    dt = np.minimum(np.diff(t, append=t[-1]), MAX_DT_MS)
    dwell = [float(dt[pos == p].sum()) for p in (0, 1)]
    ontext = [float(dt[(pos == p) & (char >= 0)].sum()) for p in (0, 1)]
    cov, depth, visits = [], [], []
    for p in (0, 1):
        c = char[(pos == p) & (char >= 0)]
        L = max(1, lens[p])
        nblocks = max(1, int(np.ceil(L / BLOCK)))
        cov.append(len(np.unique(np.minimum(c, L - 1) // BLOCK)) / nblocks if len(c) else 0.0)
        depth.append(float(np.percentile(np.minimum(c, L), 90)) / L if len(c) else 0.0)
    on = pos >= 0
    s = pos[on]
    if len(s):
        brk = np.r_[True, s[1:] != s[:-1]]
        vs = s[brk]
        visits = [float((vs == p).sum()) for p in (0, 1)]
        first = 1.0 if vs[0] == 0 else -1.0
    else:
        visits, first = [0.0, 0.0], 0.0
    tot = dwell[0] + dwell[1]
    out["d_share"] = dwell[0] / tot - 0.5 if tot > 0 else 0.0
    out["d_log_dwell"] = np.log1p(dwell[0] / 1000) - np.log1p(dwell[1] / 1000)
    out["d_log_ontext"] = np.log1p(ontext[0] / 1000) - np.log1p(ontext[1] / 1000)
    out["d_coverage"] = cov[0] - cov[1]
    out["d_depth"] = depth[0] - depth[1]
    out["d_visits"] = np.log1p(visits[0]) - np.log1p(visits[1])
    out["d_first"] = first
    # dwell per expected reading effort: ms per character, log
    out["d_log_ms_per_char"] = np.log1p(ontext[0] / max(1, lens[0])) - np.log1p(ontext[1] / max(1, lens[1]))
    out["s_log_total_s"] = np.log1p(tot / 1000)
    out["s_switches"] = np.log1p(max(0.0, sum(visits) - 1))
    return out


def turn_features(hits: pd.DataFrame, lens: tuple[int, int],
                  texts: tuple[str, str] | None = None) -> dict[str, float]:
    """Features of one turn from its ``hits`` rows (columns t, source, position, x, char_index;
    with the two response ``texts`` and a ``window`` column, each ``char_index`` is first checked
    against its window, :func:`gazepref.datasets.text_mapping.anchor_positions`)."""
    out: dict[str, float] = {}
    for source in SOURCES:
        h = hits[(hits["source"] == source)]
        if len(h) == 0:
            continue
        inbox = h[h["x"] >= 0].sort_values("t", kind="stable")
        inbox = inbox.drop_duplicates("t", keep="first")  # one box per sample time
        allt = np.unique(h["t"].to_numpy(dtype=float))
        pos = np.full(len(allt), -1, dtype=np.int64)
        char = np.full(len(allt), -1, dtype=np.int64)
        j = np.searchsorted(allt, inbox["t"].to_numpy(dtype=float))
        pos[j] = inbox["position"].to_numpy(dtype=np.int64)
        char[j] = _anchored(inbox, texts)
        m = _side_measures(allt, pos, char, lens)
        if source == "gaze" and "camera_ok" in h:
            cam = h["camera_ok"].to_numpy()
            m["s_camera_ok"] = float((cam == 1).mean()) if len(cam) else 0.0
        out.update({f"{source}_{k}": v for k, v in m.items()})
    return out


def _anchored(inbox: pd.DataFrame, texts: tuple[str, str] | None) -> np.ndarray:
    """The in-box rows' ``char_index``, re-anchored by their ``window`` where both are known."""
    ci = inbox["char_index"].to_numpy(dtype=np.int64)
    if texts is None or "window" not in inbox:
        return ci
    from gazepref.datasets.text_mapping import anchor_positions

    return anchor_positions(texts, inbox["position"].to_numpy(), ci, inbox["window"].to_numpy(dtype=object))


def hits_features(rec, comparisons: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """Implicit features for the rows of a comparison frame, indexed like it (NaN where a task has
    no trajectories)."""
    rows: dict[int, dict[str, float]] = {}
    tasks = comparisons.groupby("task_id").groups
    items = list(tasks.items())
    if progress:
        from gazepref.progress import progress as bar

        items = bar(items, total=len(items), desc="implicit features")
    by_task: dict | None = None
    for task_id, idx in items:
        try:
            s = rec.streams(task_id, cache=False)
        except UserError:  # a task the source has no trajectories for
            continue
        # IFLLM's own rel_* rows, or (our site) rows written from the derived word columns
        if "hits" not in s and by_task is None:
            by_task = turns_by_task(rec)
        hits = rel_rows(s, by_task.get(task_id, []) if by_task is not None else [])
        if hits is None or hits.num_rows == 0:
            continue
        cols = [c for c in ("t", "source", "position", "x", "char_index", "window", "camera_ok", "turn")
                if c in hits.column_names]
        h = hits.select(cols).to_pandas()
        if "turn" not in h:
            continue
        by_turn = dict(tuple(h.groupby("turn")))
        for i in idx:
            r = comparisons.loc[i]
            ht = by_turn.get(int(r["index"]))
            if ht is None:
                continue
            texts = (str(r["text_0"]), str(r["text_1"]))
            rows[i] = turn_features(ht, (len(texts[0]), len(texts[1])), texts)
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(comparisons.index)
    for source in SOURCES:
        df[f"{source}_s_present"] = df.filter(like=f"{source}_d_share").notna().any(axis=1).astype(float) \
            if f"{source}_d_share" in df else 0.0
    return df


def implicit_columns(df: pd.DataFrame, sources: tuple[str, ...] = SOURCES, symmetric: bool = False) -> list[str]:
    """Default implicit feature columns of ``df`` for ``sources`` (antisymmetric ones; plus symmetric
    context when ``symmetric``)."""
    out = []
    for c in df.columns:
        src, _, rest = c.partition("_")
        if src not in sources:
            continue
        if rest.startswith("d_") or (symmetric and rest.startswith("s_")):
            out.append(c)
    return out


def swap_implicit(df: pd.DataFrame) -> pd.DataFrame:
    """Left/right exchanged: antisymmetric columns negated."""
    out = df.copy()
    for c in out.columns:
        src, _, rest = c.partition("_")
        if src in SOURCES + ("tf",) and rest.startswith("d_"):
            out[c] = -out[c]
    return out


# --------------------------------------------------------------------------- signals (issue 5) table

#: measures of the signal-processor's comparison table left out here: the side looked at / pointed
#: at *last* before the choice (the pointer's way down to the Left | Right buttons), data volumes
_SIGNALS_SKIP = ("last", "select_n", "copy_n")


def from_signals_table(table: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Map ``gazepref.signals.features``' per-comparison table (its default feature columns) onto
    this module's conventions, aligned to ``comparisons`` by ``turn_id``: ``d_*`` (left minus right;
    times and counts as signed logs) → ``gaze_d_sig_*`` / ``mouse_d_sig_*``; ``*_share_l`` centred;
    ``*_first_side`` as +½ left / −½ right. ``last`` measures, ``task_*``, ``label_*`` and ``post_*``
    columns are never taken."""
    t = table.copy()
    t["turn_id"] = t["turn_id"].astype(str)
    t = t.drop_duplicates("turn_id").set_index("turn_id").reindex(comparisons["turn_id"].astype(str))
    out: dict[str, np.ndarray] = {}

    def slog(v: pd.Series) -> np.ndarray:
        v = v.astype(float).to_numpy()
        return np.sign(v) * np.log1p(np.abs(v))

    for col in t.columns:
        if col.startswith(("task_", "label_", "post_")) or any(s in col for s in _SIGNALS_SKIP):
            continue
        if col.startswith("d_") and ("_g_" in col or "_m_" in col or "_sc_" in col):
            src = "gaze" if "_g_" in col else "mouse"
            v = t[col].astype(float)
            scale = 1000.0 if col.endswith("_ms") else 1.0
            big = col.endswith(("_ms", "_px", "_n", "_px_s")) or "visits" in col or "regressions" in col
            out[f"{src}_d_sig_{col[2:]}"] = slog(v / scale) if big else v.to_numpy()
        elif col[:2] in ("g_", "m_") and col.endswith("_share_l"):
            out[f"{'gaze' if col[0] == 'g' else 'mouse'}_d_sig_{col}"] = t[col].astype(float).to_numpy() - 0.5
        elif col[:2] in ("g_", "m_") and col.endswith("_first_side"):
            out[f"{'gaze' if col[0] == 'g' else 'mouse'}_d_sig_{col}"] = (0.5 - t[col].astype(float)).fillna(0).to_numpy()
    return pd.DataFrame(out, index=comparisons.index)


def signals_features(rec, comparisons: pd.DataFrame, jobs: int = 1, progress: bool = False) -> pd.DataFrame:
    """Build the signal-processor's comparison table for a recording (a Recording or a source
    :func:`gazepref.datasets.sources.open_source` opens) and map it (:func:`from_signals_table`).
    Raises ``ImportError`` when that module is not available."""
    from gazepref.signals import features as sf

    res = sf.build(rec, jobs=jobs, sentences=False, progress=progress)
    table = getattr(res, "comparisons", None)
    if table is None:
        raise ImportError("gazepref.signals.features.build returned no comparison table")
    return from_signals_table(table, comparisons)
