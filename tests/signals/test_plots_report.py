"""``gazepref report``: one self-contained HTML file (images embedded, nothing fetched)."""
from __future__ import annotations

import base64
import json
import re

import pytest

from gazepref.cli import main
from gazepref.signals.plots.report import build_report, reward_section
from gazepref.signals.plots.synthetic import ifllm_like, site_like

REWARD = {"protocol": "group", "folds": 5, "seeds": [0, 1], "n": 120, "workers": 30, "models": {
    "length_rule": {"track": "text", "accuracy": 0.6, "accuracy_std": 0.0, "auc": 0.61, "log_loss": 0.69, "ece": 0.05},
    "fused_late": {"track": "fused", "accuracy": 0.64, "accuracy_std": 0.01, "auc": 0.66, "log_loss": 0.66,
                   "ece": 0.04}},
    "gain_fused_vs_best_text": {"fused": "fused_late", "best_text": "length_rule", "gain": 0.04, "ci_low": -0.01,
                                "ci_high": 0.09, "n_workers": 30}}


def _check_self_contained(html: str) -> list[bytes]:
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I)
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    srcs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    pngs = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    return pngs


def test_report_synthetic_with_reward_table(tmp_path):
    rj = tmp_path / "rm.json"
    rj.write_text(json.dumps(REWARD))
    html = build_report(ifllm_like(), reward_json=rj, n_examples=1)
    pngs = _check_self_contained(html)
    assert len(pngs) == 6  # quality, attention, features, heatmap, scanpath, timeline
    assert "fused_late" in html and "64.0 ± 1.0" in html and "+4.0 points" in html
    assert "Data quality" in html and "Behaviour" in html


def _new_names(rep: dict) -> dict:
    """REWARD as ``reward evaluate --json`` writes it now (REWARD: an older file's names)."""
    new = {("participants" if k == "workers" else k): v for k, v in rep.items()}
    new["gain_fused_vs_best_text"] = {("n_participants" if k == "n_workers" else k): v
                                      for k, v in rep["gain_fused_vs_best_text"].items()}
    return new


@pytest.mark.parametrize("rep", [REWARD, _new_names(REWARD)], ids=["old-names", "new-names"])
def test_reward_section_counts_participants(tmp_path, rep):
    """The reward table counts participants, from ``reward evaluate --json`` files old and new."""
    rj = tmp_path / "rm.json"
    rj.write_text(json.dumps(rep))
    html = reward_section(rj)
    assert "participants = 30" in html and "(30 participants)" in html and "worker" not in html


def test_report_site_form_without_reward_json():
    html = build_report(site_like(), n_examples=0)
    _check_self_contained(html)
    assert "No reward-model results given" in html


@pytest.mark.parametrize("as_json", [False, True])
def test_report_cli_on_the_sample(ifllm_sample, tmp_path, capsys, as_json):
    out = tmp_path / "report.html"
    assert main(["report", str(ifllm_sample), "--participant", "worker_29e7a1a6", "--examples", "0",
                 "--out", str(out)] + ["--json"] * as_json) == 0
    printed = capsys.readouterr().out
    if as_json:
        assert json.loads(printed) == {"out": str(out), "bytes": out.stat().st_size}
    else:
        assert printed.strip() == str(out)
    html = out.read_text()
    _check_self_contained(html)
    assert "worker_29e7a1a6" in html


@pytest.mark.parametrize("ci, says", [((0.01, 0.07), "95 % CI resampling participants [+1.0, +7.0]"),
                                     ((None, None), "no CI (1 participant")])
def test_reward_section_gain_without_ci(tmp_path, ci, says):
    """``reward evaluate --json`` writes a null CI when one participant was tested (nothing to
    resample); the section says so instead of failing on ``100 * None``."""
    rep = _new_names(REWARD)
    rep["gain_fused_vs_best_text"].update(ci_low=ci[0], ci_high=ci[1], p_gain_le_0=None,
                                          n_participants=1 if ci[0] is None else 30)
    rj = tmp_path / "rm.json"
    rj.write_text(json.dumps(rep))
    html = reward_section(rj)
    assert says in html and "nan" not in html


def test_report_generic_reward_json(tmp_path):
    rj = tmp_path / "other.json"
    rj.write_text(json.dumps([{"model": "a", "accuracy": 0.5}, {"model": "b", "accuracy": 0.7}]))
    html = reward_section(rj)
    assert "<td class=\"l\">b</td>" in html and "0.70" in html
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"group": REWARD, "random": {**REWARD, "protocol": "random"}}))
    html = reward_section(wrapped)
    assert html.count("fused_late") == 4 and "random" in html
    odd = tmp_path / "odd.json"  # "models" that is no table of models: shown as it is (it raised)
    odd.write_text(json.dumps({"models": 5}))
    assert "models" in reward_section(odd)


def test_report_says_how_many_seeds_were_run(tmp_path):
    """Leave-one-worker-out: the seeds give the same folds and ran once (``seeds_run``)."""
    rj = tmp_path / "lowo.json"
    rj.write_text(json.dumps({**REWARD, "folds": 30, "seeds": [0, 1, 2], "seeds_run": 1}))
    html = reward_section(rj)
    assert "1 of 3 seeds run (the others give the same folds)" in html and "3 seeds," not in html
    rj.write_text(json.dumps({**REWARD, "seeds_run": 2}))
    assert "2 seeds," in reward_section(rj)


@pytest.mark.parametrize("seeds, folds, says", [
    (1, 5, "5 folds, 1 seed, n = 18"), (2, 3, "3 folds, 2 seeds, n = 18"),
    (1, 8, "5 folds, 1 seed, 8 folds asked, one per participant run, n = 18")])
def test_report_header_of_a_sample_evaluation(ifllm_sample, tmp_path, capsys, seeds, folds, says):
    """The reward table's header for ``reward evaluate --json`` on the IFLLM sample (5 workers):
    one seed is "1 seed", and more folds than workers say how many ran and how many were asked."""
    assert main(["reward", "evaluate", str(ifllm_sample), "--models", "length_rule", "--seeds", str(seeds),
                 "--folds", str(folds), "--json"]) == 0
    rj = tmp_path / "rm.json"
    rj.write_text(capsys.readouterr().out)
    assert says in re.sub(r"<[^>]+>", "", reward_section(rj))


def test_report_says_where_its_behaviour_measures_come_from():
    """The behaviour section reads the feature table (cleaned samples, the region rule:
    docs/analyst_views.md); the report must not tell the reader they are raw, uncleaned samples."""
    html = build_report(site_like(), n_examples=0)
    footer = html.rsplit("<p class='muted'>", 1)[1]
    assert "no cleaning" not in footer and "raw samples" not in footer
    assert "<code>gazepref features</code>" in footer and "region rule" in footer and "raw streams" in footer


def test_report_examples_heading_says_whether_they_are_labelled(ifllm_sample):
    """worker_f815af5e has no labelled pairwise turn: its example turns are not 'labelled turns'."""
    html = build_report(str(ifllm_sample), participant="worker_f815af5e", n_examples=1)
    assert "Example turns" in html and "No labelled pairwise turns" in html
    assert "The labelled turns with the most gaze" not in html and "The turns with the most gaze" in html


def test_reward_section_reads_the_recorded_dev_run():
    """docs/reward_models_dev.json was written with the old names (workers, n_workers): the
    report reads it as a file of today's."""
    from pathlib import Path

    html = reward_section(Path(__file__).resolve().parents[2] / "docs" / "reward_models_dev.json")
    assert "participants = 47" in html and "(47 participants)" in html


def _section_table(html: str, heading: str) -> list[dict[str, str]]:
    """The rows (heading → cell text) of the first table after ``<h2>heading</h2>``."""
    part = html.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    table = part[part.index("<table>"):part.index("</table>")]
    head = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    return [dict(zip(head, (re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row))))
            for row in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", table)]


@pytest.mark.parametrize("participant", [None, "worker_f815af5e", "worker_a2b63b0c"])
def test_report_counts_agree_between_data_and_quality_tables(ifllm_sample, participant):
    """A count has one name and one value: the Data table's tasks and turns (all of them, as
    ``data summary`` counts them) are the per-participant table's, summed; a task without a
    trajectory folder counts in "tasks", not in "tasks with samples" (worker_f815af5e: 3 tasks,
    2 with samples; the report said 3 in one table and 2 in the other, both under "tasks")."""
    from gazepref.datasets.recording import open_recording, summarize

    html = build_report(str(ifllm_sample), participant=participant, n_examples=0)
    data, = _section_table(html, "Data")
    quality = _section_table(html, "Data quality")
    assert len(quality) == int(data["participants"])
    for n in ("tasks", "turns", "tasks with samples", "turns with samples"):
        assert n in data and n in quality[0], n
        assert int(data[n]) == sum(int(r[n]) for r in quality), n
    if participant is None:  # the whole sample: `data summary`'s counts
        s = summarize(open_recording(ifllm_sample))
        assert [int(data[n]) for n in ("participants", "tasks", "tasks with samples", "turns")] == \
            [s["participants"], s["tasks"], s["tasks_with_samples"], s["turns"]]
    else:
        assert int(data["tasks with samples"]) < int(data["tasks"])


@pytest.fixture(scope="module")
def sample_summary(ifllm_sample):
    from gazepref.signals.plots.summary import collect

    return collect(str(ifllm_sample))


@pytest.mark.parametrize("rule, measure", [("longer response", "n_chars"), ("more gaze dwell", "g_text_ms"),
                                           ("more pointer time", "m_text_ms"), ("read further", "g_depth")])
def test_pair_rules_score_ties_like_the_model_table(sample_summary, rule, measure):
    """A simple rule is scored as the reward-model table scores a model
    (:func:`gazepref.models.metrics.correct`: a tie earns half) over every labelled pair with the
    measure (the sample: 18, 4 of them tied on "read further"; the report said "50 % of 14
    labelled pairs", leaving the ties out), and its line says how ties count."""
    import numpy as np

    from gazepref.models.metrics import correct
    from gazepref.signals.plots.report import pair_rules

    r = sample_summary.responses
    lab = r[r["outcome"].notna()]
    a = lab[lab["outcome"] == "preferred"].set_index(["task_id", "turn"])[measure].astype(float)
    b = lab[lab["outcome"] == "not preferred"].set_index(["task_id", "turn"])[measure].astype(float)
    a, b = a.align(b, join="inner")
    ok = a.notna() & b.notna()
    p_left = np.sign(a[ok] - b[ok]).to_numpy() * 0.5 + 0.5  # left = the preferred response; 0.5: a tie
    rules = pair_rules(r)
    assert rules[rule + " (pairs)"] == ok.sum() == lab.groupby(["task_id", "turn"]).ngroups == 18
    assert rules[rule] == pytest.approx(correct(np.ones(ok.sum()), p_left).mean())
    assert rules[rule + " (ties)"] == int((p_left == 0.5).sum())
    from gazepref.signals.plots.report import rule_line

    line = rule_line(rules, rule)
    assert line.startswith(f"{rule}: {100 * rules[rule]:.1f} % of 18 labelled pairs") and "ties count half" in line


def test_report_rule_lines_count_ties(ifllm_sample):
    """The report's rule lines cover the labelled pairs with ties ("read further" on the sample: 4)."""
    html = build_report(str(ifllm_sample), n_examples=0)
    assert "read further: 50.0 % of 18 labelled pairs (ties count half, as in the model table; 4 ties)" in html


def test_rows_without_a_position_are_no_gaze_in_the_quality_table_and_the_summary():
    """A failed calibration's rows (x/y empty, stored ~14 times a second for a later re-estimate)
    showed as 14 Hz of gaze with no gaps in the data-quality view and counted in ``data summary``'s
    gaze samples: rows with a position make the rate and gaps, and the summary says how many there
    are (``gaze_samples_with_position``, as ``mouse_samples_with_position``)."""
    import numpy as np
    import pyarrow as pa

    from gazepref.datasets.recording import gaze_positions
    from gazepref.signals.plots.summary import _task_quality

    t = np.arange(0.0, 20_000.0, 70.0)
    x = np.full(len(t), 640.0)
    nan = np.full(len(t), np.nan)
    seen = pa.table({"t": t, "x": x, "y": x, "flags": np.zeros(len(t), np.int32)})
    failed = pa.table({"t": t, "x": nan, "y": nan, "flags": np.full(len(t), 320, np.int32)})
    good = _task_quality("p/1", "p", None, {"gaze": seen}, 2)
    assert good["gaze_samples"] == len(t) and good["sample_rate_hz"] == pytest.approx(1000 / 70)
    row = _task_quality("p/1", "p", None, {"gaze": failed}, 2)
    assert row["gaze_samples"] == 0 and np.isnan(row["sample_rate_hz"]) and np.isnan(row["duration_s"])
    assert row["face_ratio"] == 1.0  # the camera saw the face: from all rows
    half = pa.table({"t": t, "x": np.where(t < 10_000, x, np.nan), "y": x})
    assert gaze_positions(half) == int((t < 10_000).sum()) and gaze_positions(failed) == 0
    assert _task_quality("p/1", "p", None, {"gaze": half}, 2)["duration_s"] == pytest.approx(9.94)


def test_the_gain_line_says_it_is_of_the_seed_averaged_predictions(tmp_path):
    """The gain is computed on the predictions averaged over the seeds: with 2 seeds of 54 pairs
    the line said +18.5 points under a table of 55.6 % against 44.4 % (each seed's accuracy,
    averaged). The line now says what it is and gives the two accuracies it is the difference of."""
    rep = json.loads(json.dumps(REWARD))
    rep["models"]["fused_late"].update(accuracy=0.556, accuracy_seed_avg=0.63)
    rep["models"]["length_rule"].update(accuracy=0.444, accuracy_seed_avg=0.444)
    rep["gain_fused_vs_best_text"]["gain"] = 0.186
    rj = tmp_path / "rm.json"
    rj.write_text(json.dumps(rep))
    html = reward_section(rj)
    assert ("+18.6 points (on the predictions averaged over the 2 seeds: 63.0 % against 44.4 %; the table "
            "averages each seed's accuracy)") in html, html
    del rep["models"]["fused_late"]["accuracy_seed_avg"]  # a report written before the column: as it was
    rj.write_text(json.dumps(rep))
    assert "+18.6 points, 95 % CI" in reward_section(rj)
