"""The site's commands (``gazepref serve``, ``gazepref user add``): a database that cannot be
reached or opened is a user's mistake, one line naming it (the password masked), exit status 2."""
from __future__ import annotations

import io
import socket

import pytest

from gazepref.cli import main


def _refused_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://gp:hunter2@127.0.0.1:{port}/gazepref"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
@pytest.mark.parametrize("command", [["user", "add", "ada", "--password-stdin"], ["serve", "--port", "1"]])
def test_an_unusable_database_is_a_one_line_error(command, kind, tmp_path, monkeypatch, capsys):
    url = _refused_url() if kind == "postgresql" else str(tmp_path / "no" / "such" / "folder" / "site.sqlite")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main([*command, "--db", url, "--instance", str(tmp_path / "instance")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gazepref: error: cannot use the database ") and err.count("\n") == 1
    assert "hunter2" not in err
