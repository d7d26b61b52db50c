"""Gaze cleaning and eye-movement events for 10–30 Hz webcam data (WebGazer-like).

Cleaning (:func:`clean_gaze`): ordering and de-duplication, gaps, off-screen and spike outliers,
3-sample median smoothing within segments (a *segment* is a run of samples without a gap, and never
crosses a turn boundary). Events: fixations by I-DT (:func:`detect_fixations_idt`), I-VT labels
(:func:`ivt_fixation_mask`), saccades between fixations (:func:`saccades_between`), and
blink-or-loss gaps (:func:`detect_blinks`).

Why our own I-DT and not pymovements' ``events.idt`` (which installs fine with numpy<2 and is what
``tests/signals/test_gaze_events.py`` checks this implementation against, sample by sample):

* pymovements requires a constant sampling interval and a minimum duration divisible by it;
  webcam samples arrive with jitter (IFLLM: median 74 ms, anything from 30 to 250 ms) and gaps;
* its window loop slices numpy arrays per sample in Python (O(n·w)); 1.8 M samples must go
  through in a few seconds here. This implementation precomputes range min/max with a sparse table,
  finds every start's maximal window by a vectorised binary search, and loops in Python only over
  fixations;
* fixations must not cross gaps or turn boundaries (``segment``).

Its semantics follow the classic I-DT (Salvucci & Goldberg 2000) as pymovements implements it:
a window starting at ``i`` is a fixation when its samples span at least ``min_duration_ms`` and
its dispersion ``(max x - min x) + (max y - min y)`` is ≤ ``dispersion_px``; it grows while the
dispersion stays ≤ the threshold; the next window starts after it. (pymovements also keeps the
one sample that breaks the threshold in the fixation; we do not.)

Blinks: WebGazer gives no pupil or eyelid signal, so a blink cannot be told from a short tracking
loss. :func:`detect_blinks` reports gaps of 100–500 ms in the valid samples (plus samples flagged
:attr:`gazepref.schema.GazeFlag.BLINK` by our own pipeline) as *blink or loss* events.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Defaults tuned for WebGazer-class data (accuracy ~100–200 px, 10–30 Hz).
MAX_GAP_MS = 250.0  # a longer pause between samples splits a segment (and is not dwell time)
DISPERSION_PX = 100.0
MIN_FIXATION_MS = 100.0
IVT_VELOCITY_PX_S = 1500.0
SPIKE_PX = 300.0  # a sample this far from both neighbours, which agree, is a spike
OFFSCREEN_MARGIN_PX = 50.0


@dataclass
class CleanGaze:
    """Cleaned samples in time order. ``index`` maps back into the input arrays."""

    index: np.ndarray  # int64, positions in the input
    t: np.ndarray  # float64 ms
    x: np.ndarray  # float64 px, smoothed
    y: np.ndarray
    segment: np.ndarray  # int64, increases at each gap / group change
    duration: np.ndarray  # float64 ms each sample stands for (time to the next one, capped)
    n_input: int
    n_duplicates: int
    n_offscreen: int
    n_spikes: int

    def __len__(self) -> int:
        return len(self.t)


def sample_durations(t: np.ndarray, segment: np.ndarray, max_gap_ms: float = MAX_GAP_MS) -> np.ndarray:
    """Time each sample stands for: the interval to the next sample of its segment (capped at
    ``max_gap_ms``); the last sample of a segment gets the interval before it (0 for a lone sample).
    Only the segment's own samples are used, so nothing leaks across segments (turns)."""
    n = len(t)
    d = np.zeros(n)
    if n == 0:
        return d
    dt = np.clip(np.diff(t), 0, max_gap_ms)
    same = segment[1:] == segment[:-1]
    d[:-1] = np.where(same, dt, np.nan)
    d[-1] = np.nan
    last = np.flatnonzero(np.isnan(d))
    prev_ok = last >= 1
    prev_ok[prev_ok] = segment[last[prev_ok] - 1] == segment[last[prev_ok]]
    d[last] = 0.0
    d[last[prev_ok]] = dt[last[prev_ok] - 1]
    return d


def segments(t: np.ndarray, group: np.ndarray | None = None, max_gap_ms: float = MAX_GAP_MS) -> np.ndarray:
    """Segment id per sample: a new segment starts at a gap > ``max_gap_ms`` or a change of ``group``."""
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    brk = np.zeros(n, dtype=bool)
    brk[1:] = np.diff(t) > max_gap_ms
    if group is not None:
        brk[1:] |= group[1:] != group[:-1]
    return np.cumsum(brk).astype(np.int64)


def clean_gaze(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray | None = None,
    *,
    bounds: tuple[np.ndarray | float, np.ndarray | float] | None = None,
    max_gap_ms: float = MAX_GAP_MS,
    spike_px: float = SPIKE_PX,
    margin_px: float = OFFSCREEN_MARGIN_PX,
    smooth: bool = True,
    valid: np.ndarray | None = None,
) -> CleanGaze:
    """Order, de-duplicate, drop off-screen samples and single-sample spikes, smooth.

    ``group`` (e.g. the turn) never shares a segment across its changes. ``bounds`` = viewport
    (width, height), scalars or per-sample arrays; None checks only the top/left edges.
    ``valid``: a mask of samples to consider at all (e.g. no NaN, face found).
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_in = len(t)
    keep = np.isfinite(t) & np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    order = np.argsort(t, kind="stable")
    order = order[keep[order]]
    ts, xs, ys = t[order], x[order], y[order]
    # duplicates: same time stamp → keep the first
    dup = np.zeros(len(ts), dtype=bool)
    dup[1:] = ts[1:] == ts[:-1]
    n_dup = int(dup.sum())
    # off-screen
    off = (xs < -margin_px) | (ys < -margin_px)
    if bounds is not None:
        w, h = bounds
        w = np.asarray(w, dtype=np.float64)
        h = np.asarray(h, dtype=np.float64)
        if w.ndim:
            w, h = w[order], h[order]
        off |= (xs > w + margin_px) | (ys > h + margin_px)
    off &= ~dup
    m = ~(dup | off)
    order, ts, xs, ys = order[m], ts[m], xs[m], ys[m]
    g = None if group is None else np.asarray(group)[order]
    seg = segments(ts, g, max_gap_ms)
    # spikes: far from both neighbours (same segment) while the neighbours are close together
    n_spk = 0
    if len(ts) >= 3 and spike_px > 0:
        d_prev = np.hypot(xs[1:-1] - xs[:-2], ys[1:-1] - ys[:-2])
        d_next = np.hypot(xs[1:-1] - xs[2:], ys[1:-1] - ys[2:])
        d_nb = np.hypot(xs[2:] - xs[:-2], ys[2:] - ys[:-2])
        same = (seg[1:-1] == seg[:-2]) & (seg[1:-1] == seg[2:])
        spk = np.zeros(len(ts), dtype=bool)
        spk[1:-1] = same & (d_prev > spike_px) & (d_next > spike_px) & (d_nb < spike_px / 2)
        n_spk = int(spk.sum())
        if n_spk:
            k = ~spk
            order, ts, xs, ys, seg = order[k], ts[k], xs[k], ys[k], seg[k]
    if smooth and len(ts) >= 3:
        xs, ys = median3(xs, seg), median3(ys, seg)
    dur = sample_durations(ts, seg, max_gap_ms)
    return CleanGaze(order.astype(np.int64), ts, xs, ys, seg, dur, n_in, n_dup, int(off.sum()), n_spk)


def median3(v: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """3-sample running median within segments (segment ends keep their value)."""
    out = v.copy()
    if len(v) < 3:
        return out
    inner = (seg[1:-1] == seg[:-2]) & (seg[1:-1] == seg[2:])
    stack = np.stack([v[:-2], v[1:-1], v[2:]])
    med = np.median(stack, axis=0)
    out[1:-1] = np.where(inner, med, v[1:-1])
    return out


# --------------------------------------------------------------------------- I-DT


class _RangeMinMax:
    """Sparse tables: min and max of x and y over any index range [l, r] in O(1), vectorised."""

    def __init__(self, x: np.ndarray, y: np.ndarray, max_len: int):
        n = len(x)
        self.levels = max(1, int(np.floor(np.log2(max(1, min(max_len, n))))) + 1)
        self.tab = np.empty((4, self.levels, n))
        self.tab[0, 0], self.tab[1, 0], self.tab[2, 0], self.tab[3, 0] = x, -x, y, -y
        for k in range(1, self.levels):
            s = 1 << (k - 1)
            prev = self.tab[:, k - 1]
            cur = prev.copy()
            cur[:, : n - s] = np.maximum(prev[:, : n - s], prev[:, s:])
            self.tab[:, k] = cur

    def dispersion(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        length = hi - lo + 1
        k = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
        k = np.minimum(k, self.levels - 1)
        r = hi - (1 << k) + 1
        m = np.maximum(self.tab[:, k, lo], self.tab[:, k, r])  # (4, m)
        return (m[0] + m[1]) + (m[2] + m[3])


@dataclass
class Fixations:
    start: np.ndarray  # index of the first sample (into the arrays given)
    end: np.ndarray  # index of the last sample (inclusive)
    onset: np.ndarray  # ms
    offset: np.ndarray  # ms, time of the last sample + its duration
    duration: np.ndarray  # ms, sum of the samples' durations
    x: np.ndarray  # centroid px
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def detect_fixations_idt(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    segment: np.ndarray | None = None,
    duration: np.ndarray | None = None,
    *,
    dispersion_px: float = DISPERSION_PX,
    min_duration_ms: float = MIN_FIXATION_MS,
    max_samples: int = 1024,
) -> Fixations:
    """I-DT fixations (see the module doc). ``duration``: per-sample durations (default from
    :func:`sample_durations`); a window's duration is the sum of its samples' durations."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(t)
    seg = np.zeros(n, dtype=np.int64) if segment is None else np.asarray(segment, dtype=np.int64)
    dur = sample_durations(t, seg) if duration is None else np.asarray(duration, dtype=np.float64)
    if n == 0:
        e = np.zeros(0)
        return Fixations(e.astype(np.int64), e.astype(np.int64), e, e, e, e, e)
    idx = np.arange(n)
    # last index of each sample's segment
    seg_last = np.empty(n, dtype=np.int64)
    brk = np.flatnonzero(np.diff(seg) != 0)
    ends = np.append(brk, n - 1)
    starts = np.insert(brk + 1, 0, 0)
    for s, e in zip(starts, ends):
        seg_last[s: e + 1] = e
    cum = np.concatenate([[0.0], np.cumsum(dur)])
    # smallest window end reaching the minimum duration
    j_min = np.searchsorted(cum, cum[:-1] + min_duration_ms - 1e-9, side="left") - 1
    j_min = np.maximum(j_min, idx + 1)  # at least two samples
    hi_cap = np.minimum(seg_last, idx + max_samples - 1)
    feasible = j_min <= hi_cap
    rmm = _RangeMinMax(x, y, max_samples)
    jm = np.minimum(j_min, n - 1)
    ok_start = feasible & (rmm.dispersion(idx, jm) <= dispersion_px)
    # maximal end per start: binary search on the monotone dispersion
    end_max = idx.copy()
    a = np.flatnonzero(ok_start)  # only feasible starts need their maximal end
    lo, hi = jm[a], hi_cap[a]
    while len(a):
        done = lo >= hi
        if done.any():
            end_max[a[done]] = lo[done]
            keep = ~done
            a, lo, hi = a[keep], lo[keep], hi[keep]
            if not len(a):
                break
        mid = (lo + hi + 1) // 2
        good = rmm.dispersion(a, mid) <= dispersion_px
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid - 1)
    # next valid start at or after each index
    cand = np.where(ok_start, idx, n)
    next_start = np.minimum.accumulate(cand[::-1])[::-1]
    fs, fe = [], []
    i = int(next_start[0]) if n else n
    ns = next_start.tolist()
    em = end_max.tolist()
    while i < n:
        e = em[i]
        fs.append(i)
        fe.append(e)
        i = e + 1
        if i >= n:
            break
        i = ns[i]
    fs_a = np.asarray(fs, dtype=np.int64)
    fe_a = np.asarray(fe, dtype=np.int64)
    fdur = cum[fe_a + 1] - cum[fs_a]
    cx = np.cumsum(np.concatenate([[0.0], x]))
    cy = np.cumsum(np.concatenate([[0.0], y]))
    cnt = fe_a - fs_a + 1
    return Fixations(fs_a, fe_a, t[fs_a], t[fe_a] + dur[fe_a], fdur,
                     (cx[fe_a + 1] - cx[fs_a]) / cnt, (cy[fe_a + 1] - cy[fs_a]) / cnt)


def fixation_of_sample(fix: Fixations, n: int) -> np.ndarray:
    """Fixation index per sample (-1 outside fixations)."""
    out = np.full(n, -1, dtype=np.int64)
    if len(fix):
        lens = fix.end - fix.start + 1
        out[np.repeat(fix.start, lens) + _ranges(lens)] = np.repeat(np.arange(len(fix)), lens)
    return out


def _ranges(lens: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..l0-1, 0..l1-1, ...]."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(lens) - lens
    return np.arange(total) - np.repeat(starts, lens)


# --------------------------------------------------------------------------- I-VT, saccades, blinks


def velocities(t: np.ndarray, x: np.ndarray, y: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Point-to-point speed in px/s from each sample to the next (NaN across segment ends)."""
    n = len(t)
    v = np.full(n, np.nan)
    if n < 2:
        return v
    dt = np.diff(t)
    same = (segment[1:] == segment[:-1]) & (dt > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sp = np.hypot(np.diff(x), np.diff(y)) / dt * 1000.0
    v[:-1] = np.where(same, sp, np.nan)
    return v


def ivt_fixation_mask(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, segment: np.ndarray,
    *, velocity_px_s: float = IVT_VELOCITY_PX_S, min_duration_ms: float = MIN_FIXATION_MS,
) -> np.ndarray:
    """I-VT: samples whose speed to the next sample is below the threshold, kept in runs that
    last at least ``min_duration_ms`` (time from the run's first to its last sample + one interval)."""
    v = velocities(t, x, y, segment)
    slow = np.nan_to_num(v, nan=0.0) < velocity_px_s
    n = len(t)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    brk = np.ones(n, dtype=bool)
    brk[1:] = (slow[1:] != slow[:-1]) | (segment[1:] != segment[:-1])
    run = np.cumsum(brk) - 1
    first = np.flatnonzero(brk)
    last = np.append(first[1:] - 1, n - 1)
    dur = sample_durations(t, segment)
    run_dur = np.add.reduceat(dur, first)
    good = slow[first] & (run_dur >= min_duration_ms) & (last > first)
    return good[run]


@dataclass
class Saccades:
    from_fix: np.ndarray
    to_fix: np.ndarray
    amplitude: np.ndarray  # px between fixation centroids
    duration: np.ndarray  # ms between the fixations
    dx: np.ndarray
    dy: np.ndarray

    def __len__(self) -> int:
        return len(self.from_fix)


def saccades_between(fix: Fixations, segment: np.ndarray | None = None) -> Saccades:
    """Saccades as the movements between consecutive fixations of the same segment."""
    if len(fix) < 2:
        e = np.zeros(0)
        return Saccades(e.astype(np.int64), e.astype(np.int64), e, e, e, e)
    a = np.arange(len(fix) - 1)
    same = np.ones(len(a), dtype=bool)
    if segment is not None:
        same = segment[fix.end[:-1]] == segment[fix.start[1:]]
    a = a[same]
    dx = fix.x[a + 1] - fix.x[a]
    dy = fix.y[a + 1] - fix.y[a]
    return Saccades(a, a + 1, np.hypot(dx, dy), np.maximum(0.0, fix.onset[a + 1] - fix.offset[a]), dx, dy)


def detect_blinks(t: np.ndarray, flags: np.ndarray | None = None, *, min_ms: float = 100.0,
                  max_ms: float = 500.0) -> np.ndarray:
    """Blink-or-loss events: (start_ms, end_ms) rows for gaps of ``min_ms``–``max_ms`` between
    consecutive valid samples, and runs of samples flagged BLINK. Shape (k, 2)."""
    from .. import schema

    t = np.asarray(t, dtype=np.float64)
    ev = []
    if flags is not None and len(t):
        f = np.nan_to_num(np.asarray(flags, dtype=np.float64), nan=0).astype(np.int64)
        b = (f & schema.GazeFlag.BLINK) != 0
        if b.any():
            edges = np.diff(np.concatenate([[0], b.astype(np.int8), [0]]))
            for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                ev.append((t[s], t[e - 1]))
    if len(t) >= 2:
        dt = np.diff(t)
        k = np.flatnonzero((dt >= min_ms) & (dt <= max_ms))
        ev.extend(zip(t[k], t[k + 1]))
    out = np.asarray(sorted(ev), dtype=np.float64).reshape(-1, 2)
    return out
