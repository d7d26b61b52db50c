"""The reward models an alignment run labels with and judges by: loading a saved reward model (or
the length baseline) and adapting it to a per-response scorer for the win rate."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import UserError

__all__ = ["RewardModelScorer", "check_reward_model", "load_reward_model", "load_scorer"]


def _last_user(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt)


class RewardModelScorer:
    """A saved reward model (:func:`gazepref.models.scoring.load_reward_model`) as a
    :class:`gazepref.datasets.preference.RewardScorer`: ``score(prompt, response)`` is the text
    utility of one response (centred Bradley-Terry scale) and its confidence."""

    def __init__(self, rm: Any, name: str):
        self.rm = rm
        self.name = name

    def score(self, prompt: Any, response: str) -> tuple[float, float]:
        s = self.rm.score([{"prompt": _last_user(prompt), "response": response}])[0]
        return float(s.reward), float(s.confidence)


def _model_path(path: str | None) -> Path | None:
    """The reward model folder ``path`` names (it exists), or None for the length baseline (None
    or ``"length-baseline"``)."""
    if not path or path == "length-baseline":
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such reward model: {p}")
    return p


def load_reward_model(path: str | None):
    """The project's reward model at ``path``, or None for the length baseline (None or
    ``"length-baseline"``)."""
    p = _model_path(path)
    if p is None:
        return None
    from .scoring import load_reward_model as load

    return load(str(p))


def check_reward_model(path: str | None) -> None:
    """A one-line error now, before any step runs, when ``path`` is no reward model folder (its
    manifest read, the model itself loaded where a step uses it): a wrong ``--reward-model``
    failed only after the features step (minutes on a study), leaving a run folder half made."""
    p = _model_path(path)
    if p is not None:
        from ..datasets.recording import read_json_manifest

        read_json_manifest(p, "gazepref reward model")


def load_scorer(path: str | None):
    """A :class:`~gazepref.datasets.preference.RewardScorer` for the win rate: the reward model at
    ``path``, or the length baseline."""
    from ..datasets.preference import LengthBaselineScorer

    rm = load_reward_model(path)
    return LengthBaselineScorer() if rm is None else RewardModelScorer(rm, Path(path).name)
