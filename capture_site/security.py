"""Participant tokens, CSRF protection, pseudonyms and researcher login.

- A participant's pages embed a signed token (itsdangerous, keyed by the app's secret) naming
  their participant row and a keyed digest of its pseudonym (:class:`ParticipantToken`,
  :func:`pseudonym_digest`): signed, not encrypted, so it carries nothing an export holds (beacons
  send it in the query string, which proxies may log). The JSON API, ingest and the webcam paths
  accept nothing else, and only for the row whose pseudonym has that digest
  (:meth:`ParticipantToken.names`, :meth:`ParticipantToken.matches` for a query that read the
  row's pseudonym), so a participant can read and write only their own session, also after a
  database (SQLite made before participants were ``AUTOINCREMENT``) gave a deleted participant's
  row id to the next one. Tokens of the earlier forms: see :func:`read_participant_token`.
- Forms carry a per-browser-session CSRF token (``csrf_token()`` in templates), checked on every
  POST of the form blueprints by :func:`check_csrf`.
- Platform ids are replaced by an HMAC with the study's secret salt before anything is stored.
- Every response carries a strict Content-Security-Policy (:func:`content_security_policy`),
  defence in depth against XSS: scripts, styles, pictures and connections from the site itself.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlencode

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from .. import store

from .config import MTURK_SUBMIT_HOSTS

_TOKEN_SALT = "gazepref-participant"

#: The site's Content-Security-Policy, less ``frame-ancestors`` (:func:`content_security_policy`).
#: Every source is the site itself: the pages' scripts, styles and pictures and the vendored
#: face mesh (capture_site/vendor.py) come from it, and the pages talk only to it (the LLMs are
#: called by the server). docs/STUDY_SITE.md says what needs what.
CSP_DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    # the face mesh's TF.js wasm backend compiles its .wasm (WebAssembly.instantiate): no eval of text
    "script-src": ("'self'", "'wasm-unsafe-eval'"),
    "style-src": ("'self'",),
    "img-src": ("'self'",),
    "connect-src": ("'self'",),  # 'self' covers ws:/wss: to the same host (CSP3; Chrome 71+, Safari 16+)
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    # MTurk's submit form (platforms.py) posts to one of its hosts: turkSubmitTo is never taken raw;
    # production's externalSubmit then redirects to the worker site, a step form-action governs too
    "form-action": ("'self'", *MTURK_SUBMIT_HOSTS, "https://worker.mturk.com"),
}


def content_security_policy(frame_ancestors: tuple[str, ...] = ("'none'",)) -> str:
    """The Content-Security-Policy header's value; ``frame_ancestors``: who may show the page in
    a frame (``'none'``: nobody, as ``X-Frame-Options: DENY``)."""
    directives = {**CSP_DIRECTIVES, "frame-ancestors": frame_ancestors}
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def pseudonymise(salt: str, platform: str, raw_id: str) -> str:
    """A stable pseudonym for a platform id within one study (HMAC-SHA256, 32 hex characters)."""
    msg = f"{platform}:{raw_id.strip()}".encode()
    return hmac.new(salt.encode(), msg, hashlib.sha256).hexdigest()[:32]


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=_TOKEN_SALT)


#: hex digits of :func:`pseudonym_digest` (96 bits: two participants who share a row id, the only
#: ones it tells apart, collide with probability 2**-96)
DIGEST_HEX = 24


def pseudonym_digest(pseudonym: str) -> str:
    """What a participant token carries of ``pseudonym``: HMAC-SHA256 keyed by the app's secret
    (domain-separated from the token's signature), :data:`DIGEST_HEX` hex digits. Without the
    secret it cannot be linked to the pseudonym, and no export holds it."""
    return _app_digest("gazepref-participant-digest", pseudonym)


def _app_digest(domain: str, text: str) -> str:
    """HMAC-SHA256 of ``text`` keyed by the app's secret and separated by ``domain`` from the
    other uses of that key: :data:`DIGEST_HEX` hex digits."""
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, domain.encode() + b"\x00" + text.encode(), hashlib.sha256).hexdigest()[:DIGEST_HEX]


class ParticipantToken(NamedTuple):
    """What a participant token names: a participant row id and the keyed digest of the pseudonym
    of the participant it was issued to (:func:`pseudonym_digest`). Tokens of the earlier forms
    (:func:`read_participant_token`) have ``digest`` None and ``pseudonym`` the pseudonym itself
    (issued before the digest) or None (issued before tokens named the participant)."""
    id: int
    digest: str | None
    pseudonym: str | None = None

    def matches(self, pseudonym: str) -> bool:
        """Whether the row with this token's id and ``pseudonym`` is the participant the token was
        issued to: the row id alone could name someone else, on a database that reused a deleted
        participant's id (SQLite made before ``participants`` was AUTOINCREMENT). A token of the
        id-only form matches only where ids are never reused (:attr:`.runtime.Site.reuses_participant_ids`)."""
        if self.digest is not None:
            return hmac.compare_digest(self.digest.encode(), pseudonym_digest(pseudonym).encode())  # bytes: any text
        if self.pseudonym is not None:
            return hmac.compare_digest(self.pseudonym.encode(), pseudonym.encode())
        from .runtime import site

        return not site().reuses_participant_ids

    def names(self, p: store.Participant | None) -> bool:
        """Whether ``p`` (a loaded row, or None) is the participant this token was issued to
        (:meth:`matches`)."""
        return p is not None and p.id == self.id and self.matches(p.pseudonym)


def participant_token(p: store.Participant) -> str:
    """The token of ``p``'s pages: their row id and the keyed digest of their pseudonym, signed."""
    return _serializer().dumps({"p": p.id, "d": pseudonym_digest(p.pseudonym)})


def read_participant_token(token: str | None) -> ParticipantToken | None:
    """The participant a token names, or None when missing or forged.

    Besides the current form ``{p, d}`` two earlier forms are read (docs/STUDY_SITE.md,
    "Participant flow"): ``{p, s}`` (the pseudonym itself; pages loaded before the digest) is
    checked against the row's pseudonym as before; ``{p}`` (pages loaded before tokens named the
    participant) is accepted only where the database never reuses a participant's row id
    (:meth:`ParticipantToken.matches`)."""
    if not token or not isinstance(token, str):
        return None
    try:
        data = _serializer().loads(token)
    except (BadSignature, UnicodeError):  # UnicodeError: a lone surrogate cannot be a token
        return None
    if not isinstance(data, dict):
        return None
    pid, digest, pseudonym = data.get("p"), data.get("d"), data.get("s")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if not (digest is None or isinstance(digest, str)) or not (pseudonym is None or isinstance(pseudonym, str)):
        return None
    return ParticipantToken(pid, digest, None if digest is not None else pseudonym)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def form_draft_key(step: str) -> str:
    """The name under which a step page keeps the answers typed into its form until they are sent
    (``static/page.js``, the tab's sessionStorage): the participant of this browser session and
    the step, keyed by the app's secret, so that a page never fills in another participant's
    answers (a shared computer) or another step's, and the name tells nothing about either."""
    return _app_digest("gazepref-form-draft", f"{session.get('pid')}:{session.get('pseudonym')}:{step}")


#: the query parameter of the page a stale form of the site's own was sent back to
#: (:func:`check_csrf`): the page then says that nothing was sent
EXPIRED_ARG = "expired"


def check_csrf() -> Any:
    """Refuse a POST (any method but GET, HEAD and OPTIONS) whose form field or X-CSRF-Token
    header does not match the session's.

    A form of the site's own page that the browser sends as a navigation (``Sec-Fetch-Site:
    same-origin``, ``Sec-Fetch-Mode: navigate``: what Chromium, Firefox and Safari send) to an
    address that also has a page goes back to that page (303, ``?expired=1``) with nothing done:
    the page then says so, with a fresh form, and a step form fills in again what was typed
    (``static/page.js``). Its token is stale because the session's is newer: the study opened twice
    at once (a double click on the link: each arrival makes its own token, the later answer's
    cookie wins), or a login or another participant on the same browser since the page was drawn.
    Anything else (another site's form, a script's request, a browser that does not say where a
    request comes from) is a 400. Nothing is done either way."""
    if request.method in ("GET", "HEAD", "OPTIONS"):  # safe: the views change nothing for them
        return None
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf", "")
    if expected and hmac.compare_digest(sent.encode(), expected.encode()):  # bytes: any characters
        return None
    if (request.headers.get("Sec-Fetch-Site") == "same-origin" and request.headers.get("Sec-Fetch-Mode") == "navigate"
            and current_app.create_url_adapter(request).test(request.path, "GET")):
        args = [(k, v) for k, v in request.args.items(multi=True) if k != EXPIRED_ARG]
        return redirect(f"{request.script_root}{request.path}?{urlencode([*args, (EXPIRED_ARG, '1')])}", 303)
    abort(400, description="This page has expired (CSRF check). Please reload the page and try again.")


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Researcher pages: a browser whose session row (:mod:`.accounts`) is gone logs in again.

    Then the account's study scope (:func:`.accounts.may_open`, read on every request): a view
    with a ``slug`` argument answers 404 "no such study" for a study outside the scope, a view with
    a ``pid`` argument 404 "no such participant" for a participant of such a study, exactly as
    for one that does not exist (nothing tells that it does). Every researcher view taking either
    argument is covered, also one added later. The account's id is ``g.researcher_id``; the study
    a ``slug`` names, found in the scope, is ``g.study`` (the view reads it there, not again)."""
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        from .accounts import may_open, session_user_id
        from .runtime import db

        uid = session_user_id(db())
        if uid is None:
            for key in ("user_id", "username", "rsid"):
                session.pop(key, None)
            return redirect(url_for("dashboard.login", next=request.path))
        g.researcher_id = uid
        if "slug" in kwargs:
            g.study = may_open(db(), uid, kwargs["slug"])
            if g.study is None:
                abort(404, description="no such study")
        if "pid" in kwargs:
            p = db().get(store.Participant, kwargs["pid"]) if 0 <= kwargs["pid"] <= store.MAX_ID else None
            if p is None or may_open(db(), uid, p.study.slug) is None:
                abort(404, description="no such participant")
        return view(*args, **kwargs)

    return wrapped
