"""Per-application state of the study site (``capture_site/runtime.py``)."""
from __future__ import annotations

import pytest

from gazepref.llm.demo import DemoBackend
from sitetest import STUDY_TOML, Walker


@pytest.fixture(params=["sqlite", "postgresql"])
def own_database(request) -> dict:
    """The app setting for a database of the test's own: SQLite in the instance folder, or a fresh
    PostgreSQL database."""
    return {"DATABASE_URL": request.getfixturevalue("fresh_postgres")} if request.param == "postgresql" else {}


@pytest.mark.parametrize("change, served", [
    (("Consent text for the tests.", "Revised consent text."),
     lambda consent, backend: "Revised consent text." in consent and "Consent text for" not in consent),
    (('variant = "concise"', 'variant = "detailed"'), lambda consent, backend: backend.variant == "detailed"),
])
def test_a_running_host_follows_the_study_row_another_host_rewrote(make_app, tmp_path, own_database, change, served):
    """Two hosts on one database: the first started with the study file, served it, then the second
    started with a newer version of the file (it rewrites the study's row). The first host serves the
    newer version at its next request (consent text, a model's backend) instead of the one it first
    read, so the hosts never disagree about a study."""
    first = make_app(**own_database)
    walker = Walker(first.test_client(), "FOLLOW-1")
    walker.arrive()
    assert "Consent text for the tests." in walker.client.get("/consent").text
    site = first.extensions["gazepref"]
    with first.app_context(), site.sessions() as s:
        from gazepref import store

        study = s.query(store.Study).one()
        assert site.backend(site.config(study), "concise").variant == "concise"

    newer = tmp_path / "newer.toml"
    newer.write_text(STUDY_TOML.read_text().replace(*change, 1))
    make_app(STUDY_CONFIG=str(newer), **own_database)

    late = Walker(first.test_client(), "FOLLOW-2")
    late.arrive()
    with first.app_context(), site.sessions() as s:
        study = s.query(store.Study).one()
        cfg = site.config(study)
        backend = site.backend(cfg, "concise")
    assert isinstance(backend, DemoBackend)
    assert served(late.client.get("/consent").text, backend)


def test_a_running_host_follows_the_gaze_settings_another_host_rewrote(make_app, tmp_path, own_database,
                                                                         monkeypatch):
    """The webcam paths keep a study's ``[gaze]`` settings per process (they run per frame); they
    look at the study's row again every ``SETTINGS_RECHECK_S`` seconds, so a host follows a newer
    study file another host started with (here its settle time) instead of keeping the first it read."""
    from gazepref import store
    from gazepref.capture_site import gaze_store
    from gazetest import webcam_toml

    clock = [1000.0]
    monkeypatch.setattr(gaze_store.time, "monotonic", lambda: clock[0])
    first = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "settle_ms = 500")), **own_database)

    def threshold() -> int:
        with first.test_request_context():
            study = gaze_store.db().query(store.Study).one()
            return gaze_store.study_settings(study.id)[1].settle_ms

    assert threshold() == 500
    make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "newer.toml", "settle_ms = 700")), **own_database)
    clock[0] += gaze_store.SETTINGS_RECHECK_S / 2
    assert threshold() == 500  # cached in between
    clock[0] += gaze_store.SETTINGS_RECHECK_S
    assert threshold() == 700


def test_a_row_this_version_cannot_read_keeps_the_config_the_host_serves(make_app, caplog):
    """Hosts of two versions on one database (a rolling upgrade): a newer host rewrites the study's
    row with a file the older code cannot read (here a section it does not know). The older host
    follows the row at its next request (Site.config) and every page failed with the ConfigError (a
    500 for each participant); it keeps serving the config it has, and says why once in its log."""
    import logging

    from gazepref import store

    first = make_app()
    walker = Walker(first.test_client(), "OLDER-1")
    walker.arrive()
    assert "Consent text for the tests." in walker.client.get("/consent").text
    site = first.extensions["gazepref"]
    with site.sessions() as s, s.begin():
        study = s.query(store.Study).one()
        study.config = {**study.config, "a_newer_section": {"key": 1}}
    with caplog.at_level(logging.WARNING, logger="gazepref.capture_site.runtime"):
        for _ in range(3):
            page = walker.client.get("/consent")
            assert page.status_code == 200 and "Consent text for the tests." in page.text
    warned = [r.getMessage() for r in caplog.records if "a_newer_section" in r.getMessage()]
    assert len(warned) == 1, warned
    with site.sessions() as s:  # a process that never read the study has nothing to keep: the error stands
        from gazepref.capture_site.config import ConfigError

        site._configs.clear()
        with pytest.raises(ConfigError, match="a_newer_section"):
            site.config(s.query(store.Study).one())


def test_a_frame_socket_follows_the_gaze_settings_and_holds_no_database_session(make_app, tmp_path, own_database,
                                                                                monkeypatch):
    """A frame socket runs in one request context for its whole life and lets its database session
    go once authenticated (gaze_ws.authenticate). Its settings' recheck read the study's row through
    that session: the row stayed in the session's identity map, so the socket kept the settings it
    first read, and the session stayed in a transaction holding a pooled connection for as long as
    the socket lived (enough sockets use up the pool). The recheck reads the row in a session of its
    own, closed at once."""
    from gazepref import store
    from gazepref.capture_site import gaze_store
    from gazetest import webcam_toml

    clock = [1000.0]
    monkeypatch.setattr(gaze_store.time, "monotonic", lambda: clock[0])
    first = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "settle_ms = 500")), **own_database)
    with first.test_request_context():  # the socket's one context
        study_id = gaze_store.db().query(store.Study).one().id
        assert gaze_store.study_settings(study_id)[1].settle_ms == 500
        gaze_store.db().close()  # as authenticate() does
        clock[0] += gaze_store.SETTINGS_RECHECK_S
        assert gaze_store.study_settings(study_id)[1].settle_ms == 500
        assert not gaze_store.db().in_transaction()
        make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "newer.toml", "settle_ms = 700")), **own_database)
        clock[0] += gaze_store.SETTINGS_RECHECK_S
        assert gaze_store.study_settings(study_id)[1].settle_ms == 700
        assert not gaze_store.db().in_transaction()
