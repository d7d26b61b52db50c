"""The evaluation report as Markdown (``gazepref reward evaluate --markdown``) and JSON."""
from __future__ import annotations

import json
from typing import Any


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Protocol: **{report['protocol']}**"
             + (f", {report.get('folds')} folds × {_seeds(report)}" if report.get("seeds") else "")
             + f"; n = {report['n']} comparisons", "",
             "| model | track | accuracy % | AUC | log-loss | ECE |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in report["models"].items():
        def f(k: str, pct: bool = False) -> str:
            v = r.get(k, float("nan"))
            s = r.get(f"{k}_std")
            if pct:
                return f"{100 * v:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
            return f"{v:.3f}" + (f" ± {s:.3f}" if s is not None else "")
        lines.append(f"| {name} | {r['track']} | {f('accuracy', True)} | {f('auc')} | {f('log_loss')} | {f('ece')} |")
    for track in ("fused", "personalized"):
        g = report.get(f"gain_{track}_vs_best_text")
        if g:
            lines += ["", f"Gain of {g[track]} over the best text model ({g['best_text']}): "
                          f"{100 * g['gain']:+.1f} points, " + gain_ci_text(g) + "."]
    pr = report.get("personalized", {}).get("model_rule")
    if pr:
        lines += ["", f"'The model this person preferred earlier' alone: {100 * pr['accuracy']:.1f}% on {pr['n']} turns where it applies."]
    return "\n".join(lines)


def gain_ci_text(g: dict[str, Any]) -> str:
    """The gain's CI as the reports word it; no CI under two participants (nothing to resample)."""
    lo, hi, n = g.get("ci_low"), g.get("ci_high"), g.get("n_participants")
    if lo is None or hi is None or lo != lo or hi != hi:  # None (JSON null) or NaN
        return f"no CI ({n} participant{'s' if n != 1 else ''}: resampling participants needs at least 2)"
    return f"95% CI resampling participants [{100 * lo:+.1f}, {100 * hi:+.1f}] ({n} participants)"


def _seeds(report: dict[str, Any]) -> str:
    asked, run = len(report["seeds"]), report.get("seeds_run", len(report["seeds"]))
    if run == asked:
        return f"{asked} seed{'s' if asked != 1 else ''}"
    return f"{run} seed{'s' if run != 1 else ''} run (the {asked} seeds give only {run} distinct fold assignment{'s' if run != 1 else ''})"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=float)
