"""Bad input gives one clear line (gazepref.UserError → exit 2), never a traceback."""
from __future__ import annotations

import pytest

from gazepref import UserError
from gazepref.cli import main
from gazepref.signals.plots.plot_commands import make_plot
from gazepref.signals.plots.synthetic import ifllm_like


@pytest.fixture(scope="module")
def rec():
    return ifllm_like()


@pytest.mark.parametrize("kwargs, message", [
    (dict(participant="nobody"), "no participant 'nobody'"),
    (dict(task="worker_synth/99"), "no task 'worker_synth/99'"),
    (dict(task="worker_synth/1", turn=5), "has no turn 5 (0-based --turn: 0..1)"),
    (dict(task="worker_synth/1", turn=1), "turn 2 (index 1) of task 'worker_synth/1' has no gaze samples"),
    (dict(task="worker_synth/2"), "has no turns"),
    # the help's "task number with --participant" form, without --participant: say what it needs
    (dict(task="1"), "no task '1': a task number needs --participant, or give the task id (worker_synth/1)"),
])
def test_bad_selection(rec, kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_plot("heatmap", rec, **kwargs)


def test_unknown_kind(rec):
    with pytest.raises(UserError, match="unknown plot kind 'heatmapz'"):
        make_plot("heatmapz", rec)


def test_turn_without_mouse(rec):
    with pytest.raises(UserError, match="no mouse samples"):
        make_plot("mouse", rec, task="worker_synth/1", turn=1)


def test_turn_option_on_an_aggregate(rec):
    with pytest.raises(UserError, match="--turn applies to"):
        make_plot("quality", rec, turn=1)


def _cli(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    return rc, err


def test_cli_messages(ifllm_sample, tmp_path, capsys):
    binary = tmp_path / "scores.parquet"
    binary.write_bytes(b"PAR1\x15\x04\x15\xa0\xff\xfe")
    out = str(tmp_path / "x.png")
    cases = [
        (["plot", "nonsense", str(ifllm_sample), "--out", out], "unknown plot kind 'nonsense'"),
        (["plot", "heatmap", str(ifllm_sample), "--participant", "worker_nobody", "--out", out], "no participant"),
        (["plot", "heatmap", str(ifllm_sample), "--task", "worker_5a944891/163", "--turn", "42", "--out", out],
         "has no turn 42"),
        # a task without a trajectory folder: its turns have no gaze
        (["plot", "heatmap", str(ifllm_sample), "--task", "worker_5a944891/152", "--out", out], None),
        (["plot", "heatmap", str(ifllm_sample), "--out", str(tmp_path / "x.jpg")], "must end in .png or .svg"),
        (["plot", "heatmap", str(tmp_path / "missing"), "--out", out], "no such file or folder"),
        (["report", str(ifllm_sample), "--out", str(tmp_path / "r.pdf")], "must end in .html"),
        (["report", str(ifllm_sample), "--out", str(tmp_path / "r.html"), "--reward-json", str(tmp_path / "no.json")],
         "no such file"),
        # `reward score`'s Parquet file for the evaluation's JSON (a traceback), a report whose
        # "models" is no table (a traceback)
        (["report", str(ifllm_sample), "--out", str(tmp_path / "r.html"), "--reward-json", str(binary)],
         "not a JSON text file"),
    ]
    for args, message in cases:
        rc, err = _cli(args, capsys)
        assert rc == 2, (args, err)
        assert err.startswith("gazepref: error: ") and "\n" not in err and "Traceback" not in err, err
        if message:
            assert message in err, (message, err)


@pytest.mark.parametrize("kind, task, message", [
    ("attention", "worker_ac2b9070/108", "no labelled pairwise responses"),  # pointwise turns only
    ("attention", "worker_f815af5e/191", "no labelled pairwise responses"),  # pairwise, never answered
    ("features", "worker_f815af5e/191", "no labelled responses"),
])
def test_empty_aggregate_view_writes_no_file(ifllm_sample, tmp_path, capsys, kind, task, message):
    """An aggregate view with nothing to draw is a mistake of the selection: one line, exit 2, and
    no picture that says "no data" left behind as if it were a result."""
    out = tmp_path / f"{kind}.png"
    rc, err = _cli(["plot", kind, str(ifllm_sample), "--task", task, "--out", str(out)], capsys)
    assert rc == 2 and err.startswith("gazepref: error: ") and "\n" not in err and "Traceback" not in err, err
    assert message in err and "nothing to draw" in err
    assert not out.exists()
