"""gazepref.settings: every GAZEPREF_* variable read in one place, once per entry point."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from gazepref import UserError
from gazepref.settings import Settings, cache_dir, current, using

REPO = Path(__file__).resolve().parents[2]


def test_defaults_when_nothing_is_set(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    s = Settings.from_env({})
    assert s == Settings()
    assert s.cache_dir == Path("/home/someone/.cache/gazepref")
    assert (s.gaze_shed_ms, s.gaze_ws_commit_ms, s.gaze_ws_skip_stale) == (0.0, 500.0, True)
    # threads: unset (the server's own count when it tells, else 32)
    assert (s.worker_threads, s.threads, s.gaze_ws_max_pending, s.gaze_ws_pending_cap) == (None, 32, None, 8)
    assert s.embed_cache and s.device == "cpu" and s.gaze_concurrency is None and s.gaze_slots >= 1


def test_every_variable_is_read():
    env = {"GAZEPREF_INSTANCE": "/srv/i", "GAZEPREF_DATABASE_URL": "postgresql+psycopg://u:pw@db/g",
           "GAZEPREF_STUDY_CONFIG": "study.toml", "GAZEPREF_SECRET_KEY": "k", "GAZEPREF_GAZE_CONCURRENCY": "3",
           "GAZEPREF_GAZE_SHED_MS": "250", "GAZEPREF_GAZE_WS_COMMIT_MS": "0", "GAZEPREF_GAZE_WS_SKIP_STALE": "off",
           "GAZEPREF_GAZE_WS_MAX_PENDING": "3", "GAZEPREF_WORKER_THREADS": "64",
           "GAZEPREF_CACHE": "/tmp/c", "GAZEPREF_EMBED_CACHE": "0", "GAZEPREF_DEVICE": "cuda",
           "GAZEPREF_LLM_BASE_URL": "http://x/v1", "GAZEPREF_LLM_MODEL": "m", "GAZEPREF_LLM_API_KEY": "sk",
           "GAZEPREF_SECURE_COOKIES": "1", "GAZEPREF_PROXY_HOPS": "1",
           "GAZEPREF_INGEST_RATE_PER_S": "2.5", "GAZEPREF_INGEST_BURST": "10", "GAZEPREF_WEB_MODULES": "/srv/nm"}
    s = Settings.from_env(env)
    assert set(Settings.ENV.values()) == set(env) and set(Settings.ENV) == {f.name for f in fields(Settings)}
    assert s == Settings(instance="/srv/i", database_url="postgresql+psycopg://u:pw@db/g", study_config="study.toml",
                         secret_key="k", gaze_concurrency=3, gaze_shed_ms=250.0, gaze_ws_commit_ms=0.0,
                         gaze_ws_skip_stale=False, gaze_ws_max_pending=3, worker_threads=64, cache="/tmp/c", embed_cache=False, device="cuda",
                         llm_base_url="http://x/v1", llm_model="m", llm_api_key="sk",
                         secure_cookies=True, proxy_hops=1, ingest_rate_per_s=2.5, ingest_burst=10.0,
                         web_modules="/srv/nm")
    assert s.gaze_slots == 3 and s.cache_dir == Path("/tmp/c")
    assert s.gaze_ws_pending_cap == 3 and Settings(worker_threads=64).gaze_ws_pending_cap == 16
    assert Settings(worker_threads=4).gaze_ws_pending_cap == 2  # (at least 2)
    assert Settings(gaze_ws_max_pending=0).gaze_ws_pending_cap == 0  # no cap
    assert "sk" not in repr(s).replace("skip", "") and "pw@" not in repr(s) and "secret_key='***'" in repr(s)


def test_every_variable_in_the_code_is_a_setting():
    """No GAZEPREF_* name in the package's code that the settings do not know (read it there)."""
    names = set()
    for folder in ("core", "capture_site", "signals", "models", "datasets"):
        for path in (REPO / folder).rglob("*.py"):
            names |= set(re.findall(r"\bGAZEPREF_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    assert len(names) >= 10  # the scan finds them
    assert names <= set(Settings.ENV.values()), names - set(Settings.ENV.values())


def test_api_key_falls_back_to_openai_and_bad_numbers_are_user_errors():
    assert Settings.from_env({"OPENAI_API_KEY": "sk-o"}).llm_api_key == "sk-o"
    assert Settings.from_env({"OPENAI_API_KEY": "sk-o", "GAZEPREF_LLM_API_KEY": "sk-g"}).llm_api_key == "sk-g"
    with pytest.raises(UserError, match=r"\$GAZEPREF_GAZE_SHED_MS must be a number"):
        Settings.from_env({"GAZEPREF_GAZE_SHED_MS": "fast"})


def test_an_entry_points_settings_win_over_the_environment_for_its_duration(monkeypatch, tmp_path):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "env"))
    assert current().cache == str(tmp_path / "env")
    with using(Settings(cache=str(tmp_path / "cli"))):
        monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "changed"))
        assert cache_dir("reward") == tmp_path / "cli" / "reward"  # read once, at the entry point
    assert cache_dir("reward") == tmp_path / "changed" / "reward"  # library use: the environment now
