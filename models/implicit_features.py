"""The implicit features the reward models read: the signal processor's comparison table
(:func:`gazepref.signals.features.comparison_table`), nothing else, aligned to a comparison
frame by ``turn_id``; and the rules the models select and mirror its columns with.

Families of that table the models can read (``features=``):

* ``"inbox"`` (default; ``"hits"`` is the old name): the in-box family ``gaze_*`` / ``mouse_*``
  (:mod:`gazepref.signals.inbox`) — dwell share, log dwell, dwell on text, coverage, depth,
  visits, first box, ms per character, left minus right; symmetric context ``*_s_*``;
* ``"signals"``: the table's other pairwise measures of gaze (``d_g_*``, ``g_share_l``,
  ``g_first_side``) and the pointer (``d_m_*``, ``d_sc_*``, ``m_share_l``, ``m_first_side``), in
  their antisymmetric form (:func:`antisymmetric`);
* ``"both"``.

What is off limits is decided in one place, :func:`gazepref.signals.features.off_limits` (labels,
task-level aggregates, post-decision data, the side looked at last); no off-limits column ever
reaches the models' frame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SOURCES = ("gaze", "mouse")
FAMILIES = ("inbox", "signals", "both")
_ALIASES = {"hits": "inbox"}

#: the signals family's columns (after :func:`antisymmetric`) by source
_SIGNALS_PREFIX = {"d_g_": "gaze", "d_m_": "mouse", "d_sc_": "mouse", "g_": "gaze", "m_": "mouse"}


def family(name: str) -> str:
    """The family name ``name`` stands for (``hits`` → ``inbox``); ``ValueError`` if unknown."""
    name = _ALIASES.get(name, name)
    if name not in FAMILIES:
        raise ValueError(f"unknown features {name!r}; expected inbox (hits), signals or both")
    return name


def _signed_log(v: pd.Series) -> np.ndarray:
    v = v.astype(float).to_numpy()
    return np.sign(v) * np.log1p(np.abs(v))


def antisymmetric(table: pd.DataFrame) -> pd.DataFrame:
    """The signals family of a comparison table as left-minus-right numbers (swapping the sides
    negates each): ``d_*`` of gaze, pointer and scroll (times in s, times, counts and distances as
    signed logs), ``*_share_l`` centred on ½, ``*_first_side`` as +½ left / −½ right (0 never).
    Column names are the table's."""
    from gazepref.signals.features import off_limits

    out: dict[str, np.ndarray] = {}
    for col in table.columns:
        if off_limits(col):
            continue
        if col.startswith("d_") and ("_g_" in col or "_m_" in col or "_sc_" in col):
            v = table[col].astype(float)
            scale = 1000.0 if col.endswith("_ms") else 1.0
            big = col.endswith(("_ms", "_px", "_n", "_px_s")) or "visits" in col or "regressions" in col
            out[col] = _signed_log(v / scale) if big else v.to_numpy()
        elif col[:2] in ("g_", "m_") and col.endswith("_share_l"):
            out[col] = table[col].astype(float).to_numpy() - 0.5
        elif col[:2] in ("g_", "m_") and col.endswith("_first_side"):
            out[col] = (0.5 - table[col].astype(float)).fillna(0).to_numpy()
    return pd.DataFrame(out, index=table.index)


def select(table: pd.DataFrame, comparisons: pd.DataFrame, features: str = "inbox") -> pd.DataFrame:
    """The ``features`` family of a comparison ``table`` for the rows of ``comparisons`` (indexed
    like it, aligned by ``turn_id``; NaN where the table has no row)."""
    from gazepref.signals import inbox

    features = family(features)
    t = table.copy()
    t["turn_id"] = t["turn_id"].astype(str)
    t = t.drop_duplicates("turn_id").set_index("turn_id").reindex(comparisons["turn_id"].astype(str))
    parts = []
    if features in ("inbox", "both"):
        cols = inbox.columns(t.columns)
        parts.append(t[cols].astype(float))
        for source in SOURCES:  # a recording without samples of a source at all
            parts[-1][f"{source}_s_present"] = parts[-1].get(f"{source}_s_present", pd.Series(0.0, index=t.index)) \
                .fillna(0.0)
    if features in ("signals", "both"):
        parts.append(antisymmetric(t))
    out = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=t.index)
    out.index = comparisons.index
    return out


def implicit_table(rec, comparisons: pd.DataFrame, features: str = "inbox", progress: bool = False,
                   table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The implicit features of the rows of a comparison frame: ``features`` family of the signal
    processor's comparison table of ``rec`` (:func:`gazepref.signals.features.comparison_table`,
    or ``table`` when given), indexed like ``comparisons``."""
    if table is None:
        from gazepref.signals.features import comparison_table

        table = comparison_table(rec, progress=progress, task_ids=sorted(set(comparisons["task_id"].astype(str))))
    if not len(table) or "turn_id" not in table:
        return pd.DataFrame(index=comparisons.index)
    return select(table, comparisons, features)


def source_of(column: str) -> str | None:
    """The source of a model column (``gaze``, ``mouse``, ``tf`` for text feedback), None for
    columns that are not implicit features (text, ``hist_*``, keys)."""
    head, _, rest = column.partition("_")
    if head in SOURCES + ("tf",):
        return head if rest.startswith(("d_", "s_")) else None
    for prefix, src in _SIGNALS_PREFIX.items():
        if column.startswith(prefix):
            return src
    return None


def is_pairwise(column: str) -> bool:
    """Whether an implicit column is left minus right (swapping the sides negates it)."""
    src = source_of(column)
    if src is None:
        return False
    if column.startswith(src + "_"):
        return column[len(src) + 1:].startswith("d_")
    return column.startswith("d_") or column.endswith(("_share_l", "_first_side"))


def implicit_columns(df: pd.DataFrame, sources: tuple[str, ...] = SOURCES, symmetric: bool = False) -> list[str]:
    """Default implicit feature columns of ``df`` for ``sources`` (antisymmetric ones; plus symmetric
    context when ``symmetric``)."""
    return [c for c in df.columns if source_of(c) in sources and (symmetric or is_pairwise(c))]


def swap_implicit(df: pd.DataFrame) -> pd.DataFrame:
    """Left/right exchanged: antisymmetric columns negated."""
    out = df.copy()
    for c in out.columns:
        if is_pairwise(c):
            out[c] = -out[c]
    return out
