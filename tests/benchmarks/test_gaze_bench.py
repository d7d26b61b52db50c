"""benchmarks/gaze.py's browser mode measures what a study's task phase costs: its participants
have a calibration in force (a model of the kind a real round gives), so their samples are
scored, not only turned into features."""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _gaze_benchmark():
    import sys

    sys.path.insert(0, str(BENCHMARKS))  # gaze.py imports its sibling ingest.py
    try:
        spec = importlib.util.spec_from_file_location("bench_gaze", BENCHMARKS / "gaze.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.mark.slow
def test_the_browser_participants_are_calibrated(tmp_path, monkeypatch):
    from gazepref.capture_site.app import create_app
    from gazepref.signals.calibration import GazeCalibration

    bench = _gaze_benchmark()
    samples = bench.astronaut_samples(bench.astronaut_frames(12))
    model = bench.calibration_model(samples)
    fitted = GazeCalibration.from_bytes(model)
    assert fitted.model_kind_ == "blend" and any("_patch_" in c for c in fitted.feature_names_in_)

    study = tmp_path / "study.toml"
    study.write_text(bench.DEFAULT_STUDY.read_text().replace('webcam = "off"', 'webcam = "optional"')
                     + '\n[gaze]\ncompute = "browser"\nfps = 15\n' + bench.UNCALIBRATED_FALLBACK)
    pairs = bench.make_participants(tmp_path, 3, study, prefix="t", state={"gaze": "calibrated"})
    bench.calibrate_participants(tmp_path, study, pairs[:2], model)
    bench.calibrate_participants(tmp_path, study, pairs[2:], None)  # (--uncalibrated, and server mode)
    monkeypatch.setenv("GAZEPREF_STUDY_CONFIG", str(study))
    client = create_app(str(tmp_path), {"STUDY_CONFIG": str(study)}).test_client()
    answers = []
    for task, token in pairs:
        body = {"phase": "task", "task": task, "seq": 0, "origin": 1.0e12,
                "samples": [{"t": 66.7 * i, **samples[i % len(samples)]} for i in range(15)]}
        r = client.post("/api/gaze/samples", data=gzip.compress(json.dumps(body).encode()),
                        headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                 "X-Participant-Token": token})
        assert r.status_code == 200, r.data
        answers.append((r.json["calibrated"], r.json["stored"]))
    assert answers == [(True, 15), (True, 15), (False, 15)]


@pytest.mark.parametrize("asked, fixed, expected_s", [
    (300, False, 0.3),  # the server asks for 300 ms: every batch after the first
    (5000, False, 0.4),  # more than the study's longest: its longest
    (50, False, 0.1),  # less than the study's usual interval: the usual one
    (None, False, 0.1),  # an answer without batch_ms (a site before the pacing)
    (300, True, 0.1),  # --fixed-batches
])
def test_the_browser_clients_post_as_often_as_the_answers_ask(asked, fixed, expected_s, local_json_server):
    """The simulated pages follow the answers' ``batch_ms`` as capture_site/static/webcam.js
    ``pace`` does (within the study's task_batch_ms and task_batch_max_ms), and still send every
    picture once, in order, at most 60 a batch."""
    import argparse
    import time

    bench = _gaze_benchmark()
    # the site's sample endpoint stood in for: every batch stored, the next one asked in ``asked`` ms
    server = local_json_server(lambda body: (200, {"ok": True, "stored": len(body["samples"])}
                                             | ({} if asked is None else {"batch_ms": asked})), keep_alive=True)
    args = argparse.Namespace(fps=20.0, batch_ms=100, batch_max_ms=400, duration=2.0, fixed_batches=fixed)
    stats = bench.Stats()
    samples = [{"w": 320, "h": 240, "n": 0, "b": float(i)} for i in range(7)]
    client = bench.SampleClient(server.port, 5, "token", samples, args, stats)
    client.start_at = time.monotonic()
    client.run()
    batches = [body for _, _, body in server.requests]
    assert client.intervals[0] == pytest.approx(0.1)  # before any answer: the study's task_batch_ms
    assert client.intervals[2:] == pytest.approx([expected_s] * len(client.intervals[2:]))
    times = [s["t"] for b in batches for s in b["samples"]]
    assert stats.offered == stats.answered == len(times) and not stats.errors
    assert times[-1] >= 1000 * (args.duration - expected_s) - 1e-6  # all but what the last interval would take
    assert times == sorted(times) and len(set(times)) == len(times) and times[0] == 0.0
    assert [s["b"] for b in batches for s in b["samples"]] == [float(i % 7) for i in range(len(times))]
    assert [b["seq"] for b in batches] == list(range(len(batches)))
    assert all(len(b["samples"]) <= 60 for b in batches)


def test_the_browser_clients_send_what_their_timers_make_within_the_run(local_json_server):
    """The run is a window of a study under way: each page sends the batches its timer makes
    within ``--duration``, no partial batch at the window's end (every client sent one there, all
    in the run's last interval, on top of the regular ones: the tasks of 200 participants end
    minutes apart, not together); what is taken after the last batch is not offered, so not lost."""
    import argparse
    import time

    bench = _gaze_benchmark()
    server = local_json_server(lambda body: (200, {"ok": True, "stored": len(body["samples"])}), keep_alive=True)
    args = argparse.Namespace(fps=20.0, batch_ms=400, batch_max_ms=400, duration=1.0, fixed_batches=True)
    stats = bench.Stats()
    client = bench.SampleClient(server.port, 5, "token", [{"w": 1}], args, stats)
    client.start_at = time.monotonic()
    client.run()
    batches = [[s["t"] for s in body["samples"]] for _, _, body in server.requests]
    assert batches == [[50.0 * i for i in range(9)], [50.0 * i for i in range(9, 17)]]  # at 0.4 s and 0.8 s
    assert stats.offered == stats.answered == 17 and not stats.errors


def test_a_run_or_warm_up_shorter_than_a_batch_interval_is_refused_or_lengthened():
    """A page's first batch leaves one interval after it starts: the warm-up of --fixed-batches
    lasts at least one interval (it lasted 1 s, so with --batch-ms 2000 it made no tracker and the
    measured run's first batches paid for them); a --duration or --warm-s shorter than an interval
    is refused (no batch would be sent: p99 None)."""
    import argparse
    import subprocess
    import sys

    bench = _gaze_benchmark()
    fixed = argparse.Namespace(fixed_batches=True, batch_ms=2000, warm_s=12.0)
    assert bench.warm_seconds(fixed) == 2.0 and bench.warm_seconds(argparse.Namespace(**{**vars(fixed), "batch_ms": 250})) == 1.0
    assert bench.warm_seconds(argparse.Namespace(**{**vars(fixed), "fixed_batches": False})) == 12.0
    for extra, says in ((["--duration", "1.5"], "--duration 1.5 s is shorter than a batch interval"),
                        (["--warm-s", "1"], "--warm-s 1 s is shorter than a batch interval")):
        run = subprocess.run([sys.executable, str(BENCHMARKS / "gaze.py"), "--batch-ms", "2000", *extra],
                             cwd=BENCHMARKS.parent, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and says in run.stderr, run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("compute", ["browser", "server"])
def test_the_json_report_has_one_object_per_k_with_the_issues_keys(compute):
    """``benchmarks/gaze.py --compute MODE --participants K... --json`` prints a list with one
    object per K holding at least ``participants``, ``sustained`` (true/false), ``p99_ms`` and
    ``lost`` (what the gaze issue asks of it); a tiny run of each mode, on the served site."""
    import subprocess
    import sys

    args = ["--compute", compute, "--participants", "1", "2", "--duration", "2", "--json"]
    args += ["--warm-s", "1"] if compute == "browser" else []  # (a browser-mode option: refused in server mode)
    run = subprocess.run([sys.executable, str(BENCHMARKS / "gaze.py"), *args], cwd=BENCHMARKS.parent,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert isinstance(report, list) and [r["participants"] for r in report] == [1, 2]
    for r in report:
        assert r["compute"] == compute and isinstance(r["sustained"], bool)
        assert r["p99_ms"] is None or r["p99_ms"] >= 0
        assert isinstance(r["lost"], int) and r["lost"] >= 0
