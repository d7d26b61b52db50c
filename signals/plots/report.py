"""``gazepref report``: one self-contained HTML file (images as base64 PNG, inline CSS, no scripts,
no external resources) — data counts, data quality per participant, behaviour by outcome, example
turns, and the reward-model table when given."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import UserError
from ._common import NoData, fig_to_png
from ...datasets.sources import describe
from ._data import TurnView, open_data
from .quality import quality_flags
from .summary import COUNT_COLUMNS, Summary, collect

#: the counts' headings, one for each name in both the Data and the per-participant table (tasks
#: and turns: all of them, also those without samples; "with samples": gaze or mouse samples)
COUNT_LABELS = {k: k.replace("_", " ") for k in COUNT_COLUMNS}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1260px;margin:2em auto;
padding:0 1em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}tr.flag td{background:#fbe9e9}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:.5em 0}.muted{color:#666;font-size:.9em}
.kv td:first-child{text-align:left;font-weight:600}tr.best td{font-weight:600;background:#eef4fb}
"""


def _img(fig, alt: str) -> str:
    data = base64.b64encode(fig_to_png(fig)).decode("ascii")
    fig.clear()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _view(draw, alt: str) -> str:
    """An aggregate view's picture, or (:class:`~._common.NoData`: nothing to draw) its one line."""
    try:
        fig = draw()
    except NoData as e:
        return f"<p class='muted'>{html.escape(str(e))}</p>"
    return _img(fig, alt)


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        if float(v).is_integer() and abs(v) < 1e9:
            return f"{int(v)}"
        return f"{v:.{digits}f}"
    if isinstance(v, (list, tuple)):
        return html.escape(", ".join(str(x) for x in v))
    if isinstance(v, dict):
        return html.escape(json.dumps(v, default=str))
    return html.escape(str(v))


def _table(df: pd.DataFrame, left: tuple[str, ...] = (), row_class=None, digits: int = 2) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    rows = []
    for rec in df.to_dict("records"):
        cls = row_class(rec) if row_class else ""
        cells = "".join(f'<td class="{"l" if c in left else ""}">{_fmt(rec[c], digits)}</td>' for c in df.columns)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --------------------------------------------------------------------------- reward models


def reward_section(path: str | os.PathLike | None) -> str:
    if path is None:
        return ('<h2>Reward models</h2><p class="muted">No reward-model results given '
                '(run <code>gazepref reward evaluate --json &gt; rm.json</code> and pass <code>--reward-json rm.json</code>).</p>')
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such file: {p} (--reward-json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:  # (e.g. the Parquet file of `reward score`)
        raise UserError(f"{p}: not a JSON text file (--reward-json takes `gazepref reward evaluate --json`'s output)") from None
    except IsADirectoryError:
        raise UserError(f"{p} is a folder (--reward-json takes `gazepref reward evaluate --json`'s output)") from None
    parts = ["<h2>Reward models</h2>", f'<p class="muted">From <code>{html.escape(p.name)}</code>.</p>']
    is_report = lambda d: isinstance(d, dict) and isinstance(d.get("models"), dict)  # noqa: E731
    reports = []
    if is_report(data):
        reports = [("", data)]
    elif isinstance(data, dict) and any(is_report(v) for v in data.values()):
        reports = [(k, v) for k, v in data.items() if is_report(v)]
    if reports:
        for name, rep in reports:
            parts.append(_reward_report(name, rep))
    else:
        parts.append(_generic(data))
    return "\n".join(parts)


#: names in ``reward evaluate --json`` files written before they counted participants
OLD_REWARD_KEYS = {"workers": "participants", "workers_test": "participants_test", "n_workers": "n_participants",
                   "test_workers_left_out": "test_participants_left_out"}


def _current_names(d: dict) -> dict:
    return {OLD_REWARD_KEYS.get(k, k) if OLD_REWARD_KEYS.get(k, k) not in d else k: v for k, v in d.items()}


def _reward_report(name: str, rep: dict) -> str:
    """One ``reward evaluate --json`` report as HTML; an older file's names (:data:`OLD_REWARD_KEYS`)
    are read as the new ones."""
    rep = _current_names(rep)
    out = []
    proto = rep.get("protocol", name)
    bits = [f"protocol <b>{html.escape(str(proto))}</b>"]
    if rep.get("folds"):
        bits.append(f"{rep['folds']} folds")
    if rep.get("seeds"):
        asked, run = len(rep["seeds"]), rep.get("seeds_run", len(rep["seeds"]))
        bits.append(f"{asked} seed{'s' if asked != 1 else ''}" if run == asked
                    else f"{run} of {asked} seeds run (the others give the same folds)")
    if rep.get("folds_asked"):  # grouped CV: more folds asked than there were participants
        bits.append(f"{rep['folds_asked']} folds asked, one per participant run")
    for k in ("n", "n_train", "participants", "participants_test"):
        if k in rep:
            bits.append(f"{k.replace('_', ' ')} = {rep[k]}")
    out.append(f"<h3>{html.escape(name or str(proto))}</h3><p>{', '.join(bits)}</p>")
    rows = []
    for m, r in rep["models"].items():
        if not isinstance(r, dict):
            continue
        row = {"model": m, "track": r.get("track", "")}
        for k, lab, pct in (("accuracy", "accuracy %", True), ("auc", "AUC", False), ("log_loss", "log-loss", False),
                            ("ece", "ECE", False)):
            v = r.get(k)
            s = r.get(f"{k}_std")
            if v is None:
                row[lab] = "–"
            elif pct:
                row[lab] = f"{100 * v:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
            else:
                row[lab] = f"{v:.3f}" + (f" ± {s:.3f}" if s is not None else "")
        rows.append(row)
    if rows:
        df = pd.DataFrame(rows)
        best = df["accuracy %"].map(lambda s: float(str(s).split()[0]) if s != "–" else -1).idxmax()
        out.append(_table(df, left=("model", "track"), row_class=lambda r: "" if r["model"] != df.loc[best, "model"] else "best"))
    g = rep.get("gain_fused_vs_best_text")
    if isinstance(g, dict) and "gain" in g:
        g = _current_names(g)
        lo, hi, n = g.get("ci_low"), g.get("ci_high"), g.get("n_participants")
        if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):  # null: under 2 participants
            ci = f"no CI ({n} participant{'s' if n != 1 else ''}: resampling participants needs at least 2)"
        else:
            ci = f"95 % CI resampling participants [{100 * lo:+.1f}, {100 * hi:+.1f}]" + \
                (f" ({n} participants)" if n is not None else "")
        # the gain is that of the predictions averaged over the seeds (models.cross_validation),
        # not the difference of the table's accuracies (each seed's, averaged): said, with both
        models = rep.get("models") if isinstance(rep.get("models"), dict) else {}
        avg = [(models.get(g.get(k)) or {}).get("accuracy_seed_avg") for k in ("fused", "best_text")]
        seeds = rep.get("seeds_run") or len(rep.get("seeds") or [])
        basis = (f" (on the predictions averaged over the {seeds} seeds: {100 * avg[0]:.1f} % against "
                 f"{100 * avg[1]:.1f} %; the table averages each seed's accuracy)"
                 if None not in avg and seeds and seeds > 1 else "")
        out.append(f"<p>Gain of <b>{html.escape(str(g.get('fused')))}</b> over the best text model "
                   f"({html.escape(str(g.get('best_text')))}): {100 * g['gain']:+.1f} points{basis}, {ci}.</p>")
    return "\n".join(out)


def _generic(data: Any) -> str:
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        return _table(pd.DataFrame(data), left=tuple(k for k in data[0] if isinstance(data[0][k], str)))
    if isinstance(data, dict):
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td class='l'>{_fmt(v, 3)}</td></tr>" for k, v in data.items())
        return f'<table class="kv">{rows}</table>'
    return f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre>"


# --------------------------------------------------------------------------- behaviour


def outcome_table(r: pd.DataFrame) -> pd.DataFrame:
    lab = r[r["outcome"].notna()] if "outcome" in r else r.iloc[0:0]
    if lab.empty:
        return pd.DataFrame()
    cols = {"g_text_ms": ("gaze on text, median s", 1000), "g_depth": ("gaze depth, median", 1),
            "g_visits": ("gaze visits, median", 1), "m_text_ms": ("pointer over text, median s", 1000),
            "n_chars": ("length, median chars", 1), "label_likert": ("Likert, mean", 1)}
    rows = []
    for o in ("preferred", "not preferred"):
        d = lab[lab["outcome"] == o]
        row = {"outcome": o, "responses": len(d)}
        for c, (name, div) in cols.items():
            if c in d:
                v = d[c].astype(float)
                row[name] = (v.mean() if c == "label_likert" else v.median()) / div
        rows.append(row)
    return pd.DataFrame(rows)


def pair_rules(r: pd.DataFrame) -> dict[str, float]:
    """How often simple behaviour rules pick the preferred response of a labelled pair, scored as
    the reward-model table scores a model (:func:`gazepref.models.metrics.correct`): a pair where
    the rule's measure is equal on both responses is a tie and earns half. Each rule's
    ``"<rule> (pairs)"`` counts the labelled pairs with the measure on both responses,
    ``"<rule> (ties)"`` those of them tied; pairs missing the measure are left out."""
    lab = r[r["outcome"].notna()]
    out = {}
    if lab.empty:
        return out
    piv = lab.pivot_table(index=["task_id", "turn"], columns="outcome",
                          values=["g_text_ms", "n_chars", "g_depth", "m_text_ms"], aggfunc="first")
    for c, name in (("n_chars", "longer response"), ("g_text_ms", "more gaze dwell"), ("m_text_ms", "more pointer time"),
                    ("g_depth", "read further")):
        try:
            a, b = piv[(c, "preferred")].astype(float), piv[(c, "not preferred")].astype(float)
        except KeyError:
            continue
        ok = a.notna() & b.notna()
        if ok.sum():
            a, b = a[ok].to_numpy(), b[ok].to_numpy()
            out[name] = float(np.where(a == b, 0.5, a > b).mean())  # models.metrics.correct's convention
            out[name + " (pairs)"] = int(ok.sum())
            out[name + " (ties)"] = int((a == b).sum())
    return out


def rule_line(rules: dict[str, float], name: str) -> str:
    """One rule of :func:`pair_rules` as the report says it (ties counted half, as in the model table)."""
    n, ties = rules[name + " (pairs)"], rules[name + " (ties)"]
    return (f"{name}: {100 * rules[name]:.1f} % of {n} labelled pair{'s' if n != 1 else ''} "
            f"(ties count half, as in the model table; {ties or 'no'} tie{'s' if ties != 1 else ''})")


def example_turns(summary: Summary, k: int = 2) -> list[tuple[str, int, bool]]:
    """Labelled pairwise turns with the most gaze on the text (else any turn with gaze), leaving out
    very long turns (over 2 min of gaze on the text) when shorter ones exist: they draw as a blur.
    Each as ``(task_id, turn, labelled)``."""
    r = summary.responses
    if r.empty:
        return []
    g = r.groupby(["task_id", "turn"]).agg(gaze=("g_text_ms", "sum"), lab=("outcome", lambda s: s.notna().any()))
    g = g[g["gaze"] > 0]
    if (g["gaze"] <= 120_000).sum() >= k:
        g = g[g["gaze"] <= 120_000]
    g = g.sort_values(["lab", "gaze"], ascending=False)
    return [(str(t), int(n), bool(lab)) for (t, n), lab in zip(g.index[:k], g["lab"].iloc[:k])]


def build_report(data, reward_json=None, participant: str | None = None, jobs: int | None = None,
                 progress: bool = False, n_examples: int = 2) -> str:
    t0 = time.perf_counter()
    rec = open_data(data)
    summary = collect(rec, participant=participant, jobs=jobs, progress=progress)
    from .attention import plot_attention
    from .features import plot_features
    from .heatmap import plot_heatmap
    from .quality import plot_quality
    from .scanpath import plot_scanpath

    title = "gazepref report"
    src = html.escape(describe(rec))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}: {src}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{title}</h1><p class='muted'>Data: <code>{src}</code>"
             + (f", participant <code>{html.escape(participant)}</code>" if participant else "")
             + f" · generated {when}</p>"]
    c = summary.counts
    parts.append("<h2>Data</h2>" + _table(pd.DataFrame([{
        "participants": c.get("participants"), **{COUNT_LABELS[k]: c.get(k) for k in COUNT_COLUMNS},
        "labelled pairwise turns": c.get("pairwise_turns_labelled"), "gaze samples": c.get("gaze_samples"),
    }])))

    # quality
    parts.append("<h2>Data quality</h2>")
    q_px = max(420, 140 + 26 * min(len(summary.participants), 60))
    parts.append(_view(lambda: plot_quality(summary, size=(1200, q_px)), "data quality per participant"))
    pq = summary.participants.copy()
    if len(pq):
        pq["flags"] = [", ".join(quality_flags(r)) for r in pq.to_dict("records")]
        pq["gap_share"] = pq["gap_share"] * 100
        pq["face_ratio"] = pq["face_ratio"] * 100
        pq = pq.rename(columns={**COUNT_LABELS, "participant_id": "participant", "sample_rate_hz": "rate Hz", "gap_share": "gaps %",
                                "gaps_2s": "gaps > 2 s", "face_ratio": "face found %", "duration_s": "gaze time s",
                                "calibration_unit": "unit", "gaze_samples": "gaze samples"})
        parts.append(_table(pq, left=("participant", "flags", "unit"), row_class=lambda r: "flag" if r["flags"] else "",
                            digits=1))
        n_flag = int((pq["flags"] != "").sum())
        parts.append(f"<p>{n_flag} of {len(pq)} participants have at least one quality flag (highlighted).</p>")

    # behaviour
    parts.append("<h2>Behaviour</h2>")
    ot = outcome_table(summary.responses)
    if len(ot):
        parts.append("<h3>Preferred vs not preferred responses</h3>" + _table(ot, left=("outcome",)))
        rules = pair_rules(summary.responses)
        if rules:
            items = "".join(f"<li>{html.escape(rule_line(rules, k))}</li>" for k in rules if not k.endswith(")"))
            parts.append(f"<p>How often a simple rule picks the preferred response:</p><ul>{items}</ul>")
        parts.append(_view(lambda: plot_attention(summary, size=(1200, 520)), "attention by sentence position"))
        parts.append(_view(lambda: plot_features(summary, size=(1200, 720)), "feature distributions by outcome"))
    else:
        parts.append("<p class='muted'>No labelled pairwise turns.</p>")
        parts.append(_view(lambda: plot_features(summary, size=(1200, 720)), "feature distributions by outcome"))

    # examples
    ex = example_turns(summary, n_examples)
    if ex:
        which = "labelled turns" if all(lab for _, _, lab in ex) else "turns"
        parts.append(f"<h2>Example turns</h2><p class='muted'>The {which} with the most gaze on the text "
                     "(up to ~2 minutes of it).</p>")
        for tid, n, _ in ex:
            try:
                view = TurnView.load(rec, task=tid, turn=n)
                parts.append(f"<h3>{html.escape(tid)}, turn {n + 1}</h3>")  # counted from 1, as the figures
                parts.append(_img(plot_heatmap(rec, view=view, size=(1200, 760)), f"gaze heatmap {tid} turn {n + 1}"))
                parts.append(_img(plot_scanpath(rec, view=view, size=(1200, 760)), f"scanpath {tid} turn {n + 1}"))
                if (tid, n) == ex[0][:2]:
                    from .timeline import plot_timeline

                    parts.append(_img(plot_timeline(rec, view=view, size=(1200, 560)), f"timeline {tid} turn {n + 1}"))
            except UserError as e:
                parts.append(f"<p class='muted'>{html.escape(str(e))}</p>")

    parts.append(reward_section(reward_json))
    parts.append(f"<p class='muted'>Computed in {time.perf_counter() - t0:.1f} s. Behaviour measures are the feature "
                 "table's (<code>gazepref features</code>: cleaned samples, the region rule), the measures the "
                 "models read; data quality is computed from the raw streams.</p></body></html>")
    return "\n".join(parts)


def write_report(data, out: str | os.PathLike, reward_json=None, participant=None, jobs=None,
                 progress: bool = False, n_examples: int = 2) -> Path:
    p = Path(out)
    if p.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must end in .html, not {p.name!r}")
    if not p.parent.exists():
        raise UserError(f"no such folder for --out: {p.parent}")
    if reward_json is not None and not Path(reward_json).exists():
        raise UserError(f"no such file: {reward_json} (--reward-json)")
    if n_examples < 0:
        raise UserError("--examples must be 0 or more")
    text = build_report(data, reward_json, participant, jobs, progress, n_examples)
    p.write_text(text, encoding="utf-8")
    return p
