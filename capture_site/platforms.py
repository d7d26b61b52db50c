"""Crowd platforms: who may arrive, and how a participant goes back with a code.

The ``[platform]`` table of the study file (:class:`~gazepref.capture_site.config.PlatformConfig`,
documented in docs/STUDY_SITE.md) names the platform. Prolific participants return through the
completion URL ``https://app.prolific.com/submissions/complete?cc=CODE`` (a link, optionally
followed automatically); MTurk workers submit the assignment with a form posted to
``{turkSubmitTo}/mturk/externalSubmit`` carrying ``assignmentId`` and the code. A participant
who is screened out (declined consent, no camera in a webcam-only study) gets the screen-out
code and URL instead of the completion ones, when the study sets them.

MTurk's ``assignmentId`` and ``turkSubmitTo`` are kept raw only in the participant's signed session
cookie (:func:`session_params`), never in the database: the submit form needs them as MTurk
sent them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import store
from .config import MTURK_SUBMIT_HOSTS, StudyConfig
from .identity import MTURK_PREVIEW, Arrival

PROLIFIC_COMPLETION_URL = "https://app.prolific.com/submissions/complete?cc={code}"
LABELS = {"prolific": "Prolific", "mturk": "Amazon Mechanical Turk"}
#: what the platform calls the task a participant takes and may give back ("return the HIT")
TASK_WORDS = {"mturk": "HIT"}


@dataclass(frozen=True)
class Handoff:
    """How the page sends the participant back: a link (``url``), or a form posted to
    ``post_url`` with ``fields`` (MTurk); neither: show the code only."""

    code: str | None
    platform: str  # the participant's platform (prolific | mturk | generic | direct)
    url: str | None = None
    post_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    redirect_after_s: int = 0

    @property
    def label(self) -> str:
        return LABELS.get(self.platform, "the study platform")

    @property
    def task_word(self) -> str:
        """The platform's word for what the participant returns: "HIT" on MTurk, else "study"."""
        return TASK_WORDS.get(self.platform, "study")


def accepts(cfg: StudyConfig, arrival: Arrival) -> bool:
    """Whether the study admits this arrival (``require_id``: only with the platform's id)."""
    pc = cfg.platform
    if not pc.require_id:
        return True
    if pc.name == "any":
        return arrival.platform != "direct"
    return arrival.platform == pc.name


def session_params(arrival: Arrival) -> dict[str, str]:
    """The raw MTurk parameters the submit form needs (kept in the session cookie only)."""
    if arrival.platform != "mturk":
        return {}
    out = {}
    assignment = arrival.extras.get("assignmentId", "")
    if assignment and assignment != MTURK_PREVIEW:
        out["assignmentId"] = assignment
    submit_to = arrival.extras.get("turkSubmitTo", "").rstrip("/")
    if submit_to in MTURK_SUBMIT_HOSTS:  # only MTurk's own hosts: never post to an address from a link
        out["turkSubmitTo"] = submit_to
    return out


def _with_code(url: str, code: str) -> str:
    return url.replace("{code}", quote(code, safe="")) if "{code}" in url else url


def _handoff(cfg: StudyConfig, platform: str, params: Mapping[str, Any], code: str | None, url: str,
             redirect_after_s: int) -> Handoff:
    if platform == "mturk" and code and params.get("assignmentId"):
        submit_to = params.get("turkSubmitTo") or cfg.platform.mturk_submit_to
        return Handoff(code, platform, post_url=f"{submit_to}/mturk/externalSubmit",
                       fields={"assignmentId": params["assignmentId"], "completion_code": code},
                       redirect_after_s=redirect_after_s)
    if url and code:
        return Handoff(code, platform, url=_with_code(url, code), redirect_after_s=redirect_after_s)
    return Handoff(code, platform)


def completion(cfg: StudyConfig, p: store.Participant, params: Mapping[str, Any]) -> Handoff:
    """The hand-off of a participant who finished, with their completion code."""
    url = cfg.platform.completion_url
    if not url and (p.platform == "prolific" or cfg.platform.name == "prolific"):
        url = PROLIFIC_COMPLETION_URL
    return _handoff(cfg, p.platform or "direct", params, p.completion_code, url, cfg.platform.redirect_after_s)


def screen_out(cfg: StudyConfig, platform: str | None, params: Mapping[str, Any]) -> Handoff:
    """The hand-off of a participant who cannot take part (declined consent, no camera)."""
    code = cfg.platform.screenout_code or None
    url = cfg.platform.screenout_url
    if not url and (platform == "prolific" or cfg.platform.name == "prolific"):
        url = PROLIFIC_COMPLETION_URL
    return _handoff(cfg, platform or "direct", params, code, url, 0)


def withdrawal_handoff(cfg: StudyConfig, platform: str | None) -> Handoff:
    """How a participant who withdrew leaves the platform: no code (a withdrawal earns none, and
    the screen-out code would report them as screened out); they return the study (MTurk: the
    HIT) on the platform, through the study's ``screenout_url`` where it sets one that needs no
    code."""
    url = cfg.platform.screenout_url
    return Handoff(None, platform or "direct", url=url if url and "{code}" not in url else None)


def mark_screened_out(p: store.Participant, reason: str, camera: str | None = None) -> None:
    """Record that the participant cannot go on (``reason``: ``"no-camera"``, ...; ``camera``: how
    the camera step ended, where it did: ``"no-camera"`` or ``"skipped"``, the exports'
    ``webcam``); every flow page shows them the screen-out page from now on."""
    if not (p.state or {}).get("screened_out"):
        info = {"reason": reason, "at": store.utcnow().isoformat()} | ({"camera": camera} if camera else {})
        p.state = {**(p.state or {}), "screened_out": info}


def screened_out(p: store.Participant) -> str | None:
    """Why the participant was screened out (None: they were not)."""
    info = (p.state or {}).get("screened_out")
    return info.get("reason") if info else None
