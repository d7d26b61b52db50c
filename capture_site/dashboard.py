"""The researcher dashboard: login, studies, live progress, quality, export and deletion.

Accounts are made with ``gazepref user add USERNAME (--all-studies | --study SLUG ...)``; passwords
are stored hashed (werkzeug); login, back-off, sessions and each account's studies:
:mod:`.accounts`. The list shows the studies the account may open; every page of a study outside
them answers 404 as for no study (:func:`.security.login_required`).
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
import zipfile
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException

from .. import UserError, store
from . import accounts
from .config import ConfigError
from ..datasets.export import EXPORT_MARK
from .exporting import FORMATS, export_study
from .pages import no_store
from .purge import deletion_of, forget_in_memory, purge_participant, withdrawal_of
from .quality import IDLE_S, participant_quality, study_progress
from .runtime import db, site
from .security import check_csrf, login_required

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__, url_prefix="/admin")
bp.before_request(check_csrf)
bp.after_request(no_store)  # participants' data: not kept in the browser's cache after a logout


def researcher_error_page(e: HTTPException):
    """Errors of the researcher pages as researcher pages (not the participants' error page)."""
    # the study login_required found in the account's scope (none before it, e.g. a failed CSRF check)
    study = g.get("study")
    back = url_for("dashboard.study", slug=study.slug) if study is not None else url_for("dashboard.studies")
    return render_template("admin/error.html", code=e.code, title=e.name, message=e.description, back=back), e.code


bp.register_error_handler(HTTPException, researcher_error_page)


def _study(slug: str) -> store.Study:
    """The study ``slug``, which login_required found in the account's scope (``g.study``)."""
    study = g.get("study")
    if study is None or study.slug != slug:
        abort(404, description="no such study")
    return study


def _after_login(target: str) -> str:
    """Where a login goes: ``next`` when it is a dashboard path (never another site, nor a line
    break a Location header cannot hold), else the study list."""
    ok = (target.startswith("/admin") and not target.startswith("/admin//") and target.isprintable()
          and "\\" not in target)
    return target if ok else url_for("dashboard.studies")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Login with back-off per account and address (:mod:`.accounts`): 401 for a wrong name or
    password, 429 with Retry-After while blocked."""
    error, status, headers = None, 200, {}
    if request.method == "POST":
        user, wait = accounts.authenticate(db(), request.form.get("username", ""), request.form.get("password", ""))
        if user is not None:
            accounts.start_session(db(), user)
            return redirect(_after_login(request.args.get("next", "")))
        if wait > 0:
            error, status, headers = (f"Too many login attempts (failed, or sent at once): try again in "
                                      f"{math.ceil(wait)} s.", 429,
                                      {"Retry-After": str(math.ceil(wait))})
        else:
            error, status = "Wrong user name or password.", 401
    return render_template("admin/login.html", error=error), status, headers


@bp.post("/logout")
def logout():
    accounts.end_session(db())
    return redirect(url_for("dashboard.login"))


@bp.get("/")
@login_required
def studies():
    rows = [(s, study_progress(db(), s)) for s in db().scalars(accounts.visible_studies(g.researcher_id))]
    return render_template("admin/studies.html", rows=rows)


#: what each platform adds to the study's address (docs/STUDY_SITE.md "Crowd platforms"): Prolific
#: fills its placeholders in; MTurk's ExternalQuestion adds workerId & co. itself; elsewhere the
#: researcher puts the panel's own placeholder for ``pid``
LINK_PARAMETERS = {"prolific": "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
                   "mturk": "", "any": "?pid={{PARTICIPANT_ID}}"}


@bp.get("/studies/<slug>")
@login_required
def study(slug: str):
    st = _study(slug)
    try:
        cfg, unreadable = site().config(st), None
    except ConfigError as e:  # a row of a newer version (or an old study): its export and deletions still open
        cfg, unreadable = None, str(e)
    platform = cfg.platform.name if cfg else None
    link = url_for("flow.arrive", slug=st.slug, _external=True) + LINK_PARAMETERS.get(platform, "") if cfg else None
    return render_template("admin/study.html", study=st, progress=study_progress(db(), st),
                           webcam=cfg is not None and cfg.webcam != "off", link=link, platform=platform,
                           unreadable=unreadable,
                           participants=participant_quality(db(), st), formats=FORMATS,
                           plots="plots" in current_app.blueprints, idle_min=IDLE_S // 60)


@bp.get("/studies/<slug>/progress.json")
@login_required
def progress(slug: str):
    st = _study(slug)
    return jsonify(progress=study_progress(db(), st), participants=participant_quality(db(), st))


@bp.get("/studies/<slug>/export")
@login_required
def export(slug: str):
    st = _study(slug)
    fmt = request.args.get("format", "parquet")
    if fmt not in FORMATS:  # (a script's typo gets a status, not the study page)
        abort(400, description=f"no export format {fmt[:40]!r}: one of {', '.join(FORMATS)}")
    demographics = request.args.get("demographics") == "1"
    spreadsheet = request.args.get("spreadsheet") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="gazepref-export-"))
    buf = None
    try:
        export_study(db(), st, tmp / slug, fmt, demographics=demographics, spreadsheet_safe=spreadsheet)
        buf = tempfile.TemporaryFile()  # on disk, not in memory (exports with kept webcam frames are big)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((tmp / slug).rglob("*")):
                if path.is_file() and path.name != EXPORT_MARK:  # (the folder's mark, not the data)
                    zf.write(path, path.relative_to(tmp).as_posix())
    except UserError as e:
        if buf is not None:
            buf.close()
        flash(f"Export failed: {e}")
        return redirect(url_for("dashboard.study", slug=slug))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    buf.seek(0)
    name = f"{slug}-{fmt}{'-with-demographics' if demographics else ''}{'-for-spreadsheets' if spreadsheet else ''}.zip"
    resp = send_file(buf, mimetype="application/zip", as_attachment=True, download_name=name)
    # every participant's data: never kept in a cache (send_file's own "no-cache" allows storing
    # it, and no_store keeps a Cache-Control the view set)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/participants/<int:pid>/delete")
@login_required
def delete_participant(pid: int):
    """"Delete data" (:func:`.purge.purge_participant`): the data goes, the row stays as the
    marker that it was deleted (a withdrawal's stays as it is), so the same platform id is not
    enrolled again; ``readmit=1`` ("Allow to start again", on a deleted row) removes the marker
    too, letting that platform id start as a new participant. A participant who withdrew is never
    readmitted. The participant's webcam tracker in this process goes at once.

    Decided on the row as it is under its lock (as a withdrawal is): the set-up log and the
    window report write its state from other requests (they would write the live state back over
    the marker), the participant may withdraw and another researcher may delete or readmit it
    meanwhile. A row gone meanwhile is a 404; ``readmit=1`` of a row that is not a deletion's
    marker (still in the study, declined, withdrew) a 409 that changes nothing."""
    from sqlalchemy.exc import InvalidRequestError

    from .chunks import write_lock

    p = db().get(store.Participant, pid)
    if p is None:
        abort(404, description="no such participant")
    slug, key = p.study.slug, (p.id, p.pseudonym)
    readmit = request.form.get("readmit") == "1"
    with write_lock(site().engine):
        try:
            db().refresh(p, with_for_update=True)
        except InvalidRequestError:  # removed meanwhile (another researcher's "Allow to start again")
            db().rollback()
            abort(404, description="no such participant")
        if readmit and deletion_of(p) is None:
            db().rollback()
            abort(409, description="This participant withdrew from the study: they are not admitted again."
                   if withdrawal_of(p) is not None else
                   "Only a participant whose data was deleted may be allowed to start again (this one's was "
                   "not: \"Delete data\" first).")
        purge_participant(db(), p, readmit=readmit)
        db().commit()
    forget_in_memory(slug, key)
    if readmit:
        log.info("removed participant row %s of study %s on request: its platform id may start again", pid, slug)
        flash("The participant's data and row were deleted: their platform id may start the study again.")
    else:
        log.info("deleted the data of participant row %s of study %s on request", pid, slug)
        flash("The participant's data was deleted. Their row stays, so the same platform id is not enrolled "
              "again (\"Allow to start again\" removes it).")
    return redirect(url_for("dashboard.study", slug=slug))
