"""Fixtures of the study-site tests (Flask tutorial style): an app on a temporary instance, a
test client and a database session. Helpers shared by the test modules are in sitetest.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import sitetest (pytest runs in importlib mode)

from gazepref import store  # noqa: E402
from gazepref.capture_site.app import create_app  # noqa: E402
from sitetest import STUDY_TOML, Walker  # noqa: E402

import browsertest  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def module_playwright():
    """The Playwright driver the module's browser tests shared (browsertest.shared_playwright) stops with
    the module (a module using ``sync_playwright`` itself starts its own after it)."""
    yield
    browsertest.stop_playwright()


@pytest.fixture(autouse=True)
def csp_violations(request):
    """A browser test fails on anything its pages broke of the site's Content-Security-Policy
    (browsertest.py collects it from every context made by ``browsertest.new_context``)."""
    if request.node.get_closest_marker("browser") is None:
        yield None
        return
    browsertest.CSP_VIOLATIONS.clear()
    yield browsertest.CSP_VIOLATIONS
    found, browsertest.CSP_VIOLATIONS[:] = list(browsertest.CSP_VIOLATIONS), []
    assert not found, "the pages broke the Content-Security-Policy:\n" + "\n".join(found)


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**overrides):
        settings = {"TESTING": True, "SECRET_KEY": "test-secret", "STUDY_CONFIG": str(STUDY_TOML)}
        settings.update(overrides)
        apps.append(create_app(str(tmp_path / "instance"), settings))
        return apps[-1]

    yield make
    for app in apps:  # one PostgreSQL server serves the session: give its connections back
        app.extensions["gazepref"].dispose()


@pytest.fixture
def fresh_postgres(own_postgres_database):
    """A database of its own on the session's PostgreSQL server (other tests share ``postgres``)."""
    with own_postgres_database("hosts") as url:
        yield url


@pytest.fixture
def reusing_ids(monkeypatch):
    """Apps made after this fixture (request it before them) create ``participants`` on SQLite as
    databases made before it was AUTOINCREMENT: the id of a deleted newest participant is given
    to the next one (and so are its tasks' ids), see :func:`sitetest.reused_row`."""
    monkeypatch.setitem(store.Participant.__table__.dialect_kwargs, "sqlite_autoincrement", False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request):
    """Run the test on both databases: the URL (None: SQLite in the instance folder)."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def dbs(app):
    """A database session on the app's database."""
    with app.extensions["gazepref"].sessions() as s:
        yield s


@pytest.fixture
def walker(client):
    return Walker(client)
