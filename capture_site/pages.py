"""What every participant page of the flow gets, and the pages that end a session early.

* ``Cache-Control: no-store`` on every flow response: Back/Forward and a restored tab ask the
  server again and show the participant's current step, never a cached earlier state (the
  pages' script also reloads a page the browser restores from its back-forward cache).
* the study's minimum window (``[study] min_viewport``) as ``data-min-width``/``-height`` on
  ``<body>``, which ``static/page.js`` turns into a "please use a larger window" page; it offers
  the platform's screen-out hand-off (:func:`.platforms.screen_out`) to whoever cannot enlarge
  the window. The pages that need no large window (the hand-offs, the MTurk preview) have none.
  The page reports when it shows that page and when the window grew large enough again
  (:func:`note_window`), for the dashboard's "why they stopped".
* MTurk's HIT frame: the preview, and a "start in a new tab" page, may be shown in it.
* the declined, screened-out and not-admitted pages with their way back to the platform
  (:mod:`.platforms`), and the pages of a participant's withdrawal (:func:`withdraw_page`,
  :func:`withdrawn_page`): every page after consent has a "Withdraw from the study" link in its
  footer (``withdraw_link``), to a confirmation page that says what happens.
"""
from __future__ import annotations

from typing import Any

from flask import make_response, redirect, render_template, request, session, url_for
from sqlalchemy.exc import SQLAlchemyError

from .. import store
from .config import MTURK_SUBMIT_HOSTS, StudyConfig
from .identity import Arrival
from .plan import step_at
from .platforms import completion, screen_out, withdrawal_handoff
from .runtime import db, site, study_by_slug
from .security import content_security_policy

SCREEN_OUT_REASONS = {
    "declined": "You chose not to take part. Nothing about you was recorded apart from this decision.",
    "no-camera": "This study needs a working webcam, and none could be used on this computer, so the study "
                 "cannot go on. Thank you for your time.",
    "calibration-failed": "The eye-tracking calibration did not succeed on this computer, so the study cannot go "
                          "on. Thank you for your time.",
}


def no_store(resp):
    """After-request hook of the flow and the researcher pages: pages with the participant's state
    or data are never cached (a view that chose its own Cache-Control keeps it: the plots)."""
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


#: who may show the arrival page in a frame: MTurk's worker sites (an ExternalQuestion HIT)
FRAME_ANCESTORS = ("https://worker.mturk.com", "https://workersandbox.mturk.com", *MTURK_SUBMIT_HOSTS)


def in_frame(arrival: Arrival) -> bool:
    """An MTurk arrival loaded inside the HIT's frame (``Sec-Fetch-Dest: iframe``): the study
    opens in a tab of its own, since browsers do not send the site's cookies inside another
    site's frame."""
    return arrival.platform == "mturk" and request.headers.get("Sec-Fetch-Dest") in ("iframe", "frame")


def framable(page):
    """The page may be shown inside MTurk's HIT frame: the site's Content-Security-Policy with
    MTurk's sites in ``frame-ancestors`` (which overrides the site's ``X-Frame-Options: DENY``)."""
    resp = make_response(page)
    resp.headers["Content-Security-Policy"] = content_security_policy(("'self'", *FRAME_ANCESTORS))
    return resp


def favicon():
    return redirect(url_for("static", filename="favicon.svg"), 301)


def _session_config() -> StudyConfig | None:
    slug = session.get("study")
    study = study_by_slug(slug) if slug else None
    if study is None:
        study = study_by_slug(site().default_slug)
    return site().config(study) if study is not None else None


def current_participant() -> store.Participant | None:
    """The participant this browser is, when their row is the one it arrived as (same pseudonym:
    a row id alone could name someone else after a deletion, on a database that reuses ids)."""
    pid = session.get("pid")
    p = db().get(store.Participant, pid) if isinstance(pid, int) else None
    return p if p is not None and p.pseudonym == session.get("pseudonym") else None


def page_context() -> dict[str, Any]:
    """Template context of every flow page: the minimum window size and, where the study sets
    one, the way back to the platform for whoever cannot use a window that large (the
    screen-out hand-off of a participant without a camera), and whether the participant's
    window was last reported too small at their current step (the page then reports it only
    when it is large enough, :func:`note_window`)."""
    try:
        cfg = _session_config()
    except SQLAlchemyError:  # (the database is away: the page draws with the defaults)
        cfg = None
    viewport = cfg.min_viewport if cfg is not None else (0, 0)
    handoff = screen_out(cfg, session.get("platform"), handoff_params()) if any(viewport) else None
    try:
        p = current_participant() if any(viewport) else None
    except SQLAlchemyError:  # an error page drawn while the database is away: it still draws
        p = None
    window = ((p.state or {}).get("window") or {}) if p is not None else {}
    small = bool(window.get("too_small")) and window.get("step") == step_at(p.state, "done")
    return {"min_viewport": viewport, "viewport_handoff": handoff, "window_too_small": small}


def note_window(p: store.Participant, step: str, too_small: bool, size: tuple[int, int] | None) -> bool:
    """Record that the participant's window is too small for the study at ``step`` (the page shows
    "please use a larger window") or large enough again, as ``state["window"]`` = ``{"too_small",
    "step", "size": [w, h], "updated_at"}`` (the dashboard's "why they stopped",
    :func:`.quality.stop_reason`). Only a change is written (the page reports only changes too,
    never each resize); returns whether one was."""
    old = (p.state or {}).get("window") or {}
    if bool(old.get("too_small")) == too_small and (old.get("step") == step or not too_small):
        return False
    p.state = {**(p.state or {}), "window": {"too_small": too_small, "step": step, "size": list(size) if size else None,
                                             "updated_at": store.utcnow().isoformat()}}
    return True


def handoff_params() -> dict[str, str]:
    return session.get("handoff") or {}


def declined_page(study: store.Study):
    cfg = site().config(study)
    return render_template("declined.html", study=study, message=SCREEN_OUT_REASONS["declined"],
                           handoff=screen_out(cfg, session.get("platform"), handoff_params()))


def screened_out_page(p: store.Participant, reason: str):
    cfg = site().config(p.study)
    return render_template("screened_out.html", study=p.study, message=SCREEN_OUT_REASONS.get(reason, reason),
                           handoff=screen_out(cfg, p.platform, handoff_params()), withdraw_link=True)


def withdraw_page(p: store.Participant):
    """The confirmation of a withdrawal: what happens (the data deleted, no completion code, the
    study or HIT returned on the platform), a POST button and Cancel back to the current step."""
    return render_template("withdraw.html", study=p.study,
                           handoff=withdrawal_handoff(site().config(p.study), p.platform))


def withdrawn_page(p: store.Participant):
    """The final page of a participant who withdrew (every later visit of theirs ends here). It
    names their token (refused by the server now) so that its page.js removes the outboxes stored
    with it, and no other participant's of the same browser (a shared computer)."""
    from .security import participant_token

    return render_template("withdrawn.html", study=p.study, token=participant_token(p),
                           handoff=withdrawal_handoff(site().config(p.study), p.platform))


def deleted_page(p: store.Participant):
    """The page of a participant whose data the researchers deleted (every later visit of theirs,
    also by the same platform id: :func:`.purge.deletion_of`); 403."""
    return render_template("error.html", study=p.study, title="This study is over for you",
                           message="The researchers have deleted your data from this study, so it cannot be "
                                   "taken again. If you think this is a mistake, please contact the researchers "
                                   "through your study platform."), 403


def completion_handoff(cfg: StudyConfig, p: store.Participant):
    return completion(cfg, p, handoff_params())


def not_admitted_page(cfg: StudyConfig):
    """A link without the platform's participant id, in a study that requires one."""
    where = {"prolific": "Prolific", "mturk": "Amazon Mechanical Turk"}.get(cfg.platform.name, "your study platform")
    return render_template("error.html", title="Please open the study from " + where,
                           message=f"This study can only be started from {where}: the link you used does not say "
                                   f"who you are on {where}. Please go back to {where} and open the study from "
                                   "there."), 403
