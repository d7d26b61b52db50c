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
                     + '\n[gaze]\ncompute = "browser"\nfps = 15\n')
    pairs = bench.make_participants(tmp_path, 3, study, prefix="t", state={"gaze": "calibrated"})
    bench.calibrate_participants(tmp_path, study, pairs[:2], model)
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
