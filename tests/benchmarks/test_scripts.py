"""Every ``benchmarks/*.py`` script still starts: the library names it imports exist, its
arguments parse (``--help``), and the cheap ones run end to end on tiny inputs.

The benchmarks print the figures the docs quote but run by hand, so a renamed function, a moved
column or a changed login broke them unnoticed (``dashboard_plots_page.py`` stopped at a 302;
``page_mesh.py`` waited with an ``eval`` the site's Content-Security-Policy refuses). These checks
are the cheap part of a run: the load and fault benchmarks (gunicorn, Chromium, PostgreSQL) only
get the first two; ``test_faults.py`` runs a short fault test.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
#: not a script: the gunicorn config that ``ingest.py --profile`` passes to gunicorn
CONFIG_MODULES = {"profile_hooks"}


def _load(name: str):
    """The script as a module (not run: each has an ``if __name__ == "__main__"`` guard)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imports(name: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every absolute import in the script, those inside functions too
    (most scripts import the library lazily, after parsing their arguments)."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse((BENCHMARKS / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            out += [(node.module, a.name) for a in node.names]
    return out


def test_the_scripts_are_found():
    assert {"dashboard_plots_page", "faults", "gaze", "ingest", "reward_eval"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_what_the_script_imports_exists(name):
    _load(name)  # its own sys.path additions (sibling benchmarks, tests/capture_site helpers)
    missing = []
    for module, attr in _imports(name):
        try:
            mod = importlib.import_module(module)
            if attr is not None and not hasattr(mod, attr):
                importlib.import_module(f"{module}.{attr}")  # a submodule
        except ImportError as e:
            missing.append(f"{module}{'.' + attr if attr else ''}: {e}")
    assert not missing, f"benchmarks/{name}.py imports what is gone: {missing}"


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - CONFIG_MODULES))
def test_the_script_parses_help(name, monkeypatch, capsys):
    module = _load(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_the_profile_config_keeps_the_sites_gunicorn_hooks():
    """``ingest.py --profile`` runs gunicorn with ``profile_hooks.py`` instead of the site's config
    module: a hook the site adds there and the profile config lacks would make profiled runs differ."""
    import inspect

    from gazepref.capture_site import gunicorn_conf

    hooks = _load("profile_hooks")
    site = {n for n, f in vars(gunicorn_conf).items()
            if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == gunicorn_conf.__name__}
    assert site and all(getattr(hooks, n, None) is getattr(gunicorn_conf, n) for n in site), site
    assert callable(hooks.post_worker_init) and callable(hooks.worker_exit)


#: script -> (arguments, a line its output must hold); "{sample}" is the IFLLM sample folder.
#: A few seconds each on the 2-core dev machine.
TINY_RUNS = {
    "dashboard_plots_page": (["--tasks", "1", "--turns", "1"], "status {200: "),
    "drift_correction": (["--people", "1", "--sittings", "2", "--clicks", "3"], "3 clicks: uncorrected"),
    "features": (["--data", "{sample}", "--jobs", "1", "--json"], '"gaze_samples": 21696'),
    "feedback_eval": (["--ifllm", "{sample}"], "IFLLM real follow-ups: 32 pairs"),
    "feedback_mining": (["{sample}", "--folds", "2", "--json"], '"ordinal_cv_by_conversation"'),
    "ifllm_read": (["{sample}"], "unique gaze samples 21696"),
    "landmark_jitter": (["--pictures", "3"], "iris u"),
    "plots_timing": (["{sample}"], "report (fresh reader)"),
    "reward_eval": (["{sample}", "--seeds", "1", "--folds", "2", "--models", "length_rule,late_fusion_worker_cal"],
                    "| late_fusion_worker_cal | fused |"),
    "storage": (["--participants", "1", "--seconds", "5"], "chunks"),
    # headless Chromium, the page's face mesh on the fake webcam for a second
    "page_mesh": (["--backend", "wasm", "--thread", "worker", "--seconds", "1"], "'thread': 'worker', 'main_long_ms_per_s'"),
}
BROWSER = {"page_mesh"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.browser] if n in BROWSER else [])
                                  for n in sorted(TINY_RUNS)])
def test_the_script_runs_on_tiny_inputs(name, request):
    if name in BROWSER:
        sys.path.insert(0, str(ROOT / "tests" / "capture_site"))
        from browsertest import require_chromium

        require_chromium()
    args, expected = TINY_RUNS[name]
    if "{sample}" in args:  # (a fixture that skips where the sample is missing)
        args = [a.replace("{sample}", str(request.getfixturevalue("ifllm_sample"))) for a in args]
    run = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, f"benchmarks/{name}.py {' '.join(args)}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    assert expected in run.stdout, run.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.browser
def test_page_accuracy_scores_the_pages_landmarks(tmp_path):
    """``page_accuracy.py`` runs ``gaze evaluate``'s protocol on the landmarks of the page's face
    mesh (Chromium): every picture of a small synthetic manifest (one person, two sittings of 16
    dots) gets a face from the page, and the figure is a fit's, well below guessing the screen's
    centre (538 px on this grid)."""
    import json

    sys.path.insert(0, str(ROOT / "tests" / "capture_site"))
    from browsertest import require_chromium

    require_chromium()
    manifest = _load("gaze_accuracy").build_manifest(tmp_path, sessions=2, seed=0, people=1)
    run = subprocess.run([sys.executable, str(BENCHMARKS / "page_accuracy.py"), str(manifest)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    page = json.loads(run.stdout)["page"]
    assert page["landmarks"] == {"source": "page", "width": 320, "backend": "wasm"}
    (person,) = page["per_person"].values()
    assert person["n"] == 32 and person["face_found_ratio"] == 1.0 and person["image_sizes"] == {"320x240": 32}
    assert page["mean_error_px"] < 350, page["mean_error_px"]
