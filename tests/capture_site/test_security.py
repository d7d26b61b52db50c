"""capture_site/security.py: the site's Content-Security-Policy (the header on the participant
pages, the dashboard and MTurk's framable pages, and what it stops in a real browser) and the
participant tokens (what they carry, which rows they open)."""
from __future__ import annotations

import base64
import io
import json
import zipfile
import zlib

import pandas as pd
import pytest
from sqlalchemy import select

import browsertest
from gazepref import store
from gazepref.capture_site.config import MTURK_SUBMIT_HOSTS
from gazepref.capture_site.serving import BackgroundServer
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from sitetest import Walker, csp_breaches, legacy_token, page_data, signed_token
from test_dashboard import login, researcher  # noqa: F401 (a fixture)

#: the policy, directive by directive (every page but MTurk's two framable ones)
EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'", "'wasm-unsafe-eval'"},
    "style-src": {"'self'"},
    "img-src": {"'self'"},
    "connect-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "form-action": {"'self'", *MTURK_SUBMIT_HOSTS, "https://worker.mturk.com"},
    "frame-ancestors": {"'none'"},
}
MTURK_FRAMERS = {"'self'", "https://worker.mturk.com", "https://workersandbox.mturk.com", *MTURK_SUBMIT_HOSTS}
MTURK = {"workerId": "CSP-W", "assignmentId": "CSP-A", "hitId": "CSP-H", "turkSubmitTo": "https://www.mturk.com"}


def policy(resp) -> dict[str, set[str]]:
    """The response's Content-Security-Policy as {directive: sources}."""
    header = resp.headers.get("Content-Security-Policy")
    assert header, f"{resp.request.path} has no Content-Security-Policy"
    out = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in out, f"{name} twice in {header}"
        out[name] = set(sources)
    return out


def test_participant_pages_get_the_policy(walker):
    consent = walker.arrive()
    assert consent.status_code == 200 and 'name="decision"' in consent.text
    assert policy(consent) == EXPECTED and consent.headers["X-Frame-Options"] == "DENY"
    walker.consent()
    page = walker.step()
    assert page.status_code == 200 and policy(page) == EXPECTED
    assert csp_breaches(consent.text) == [] and csp_breaches(page.text) == []


def test_the_dashboard_gets_the_policy(client, researcher):
    page = client.get("/admin/login")
    assert policy(page) == EXPECTED and csp_breaches(page.text) == []
    assert login(client, *researcher).status_code == 302
    for path in ("/admin/", "/admin/studies/test-study"):
        page = client.get(path)
        assert page.status_code == 200 and policy(page) == EXPECTED and csp_breaches(page.text) == [], path


@pytest.mark.parametrize("kind", ["preview", "in-frame"])
def test_mturk_may_frame_only_its_preview_and_the_open_in_a_tab_page(client, kind):
    """Where MTurk may frame the page its sites are the frame-ancestors; the rest of the policy
    is the site's (a framed page gets no laxer scripts or forms)."""
    if kind == "preview":
        resp = client.get("/", query_string={**MTURK, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    else:
        resp = client.get("/", query_string=MTURK, headers={"Sec-Fetch-Dest": "iframe"})
    assert resp.status_code == 200
    assert policy(resp) == {**EXPECTED, "frame-ancestors": MTURK_FRAMERS}
    assert csp_breaches(resp.text) == []
    top = client.get("/", query_string=MTURK, headers={"Sec-Fetch-Dest": "document"})  # not in a frame: DENY
    assert top.status_code == 302 and policy(top)["frame-ancestors"] == {"'none'"}


@pytest.mark.browser
def test_chromium_enforces_the_policy_and_the_watch_reports_it(app):
    """What an injected script would try on a site page is refused and reported: an inline
    script, a style attribute, a picture or a connection elsewhere. This is also the proof that
    the browser tests' check (browsertest.py) sees a breach."""
    from playwright.sync_api import sync_playwright

    browsertest.require_chromium()
    with sync_playwright() as pw, BackgroundServer(app) as url:
        browser = browsertest.launch(pw)
        ctx = browsertest.new_context(browser, base_url=url)
        page = ctx.new_page()
        page.goto("/?PROLIFIC_PID=CSP-CHROMIUM&STUDY_ID=S&SESSION_ID=X")
        page.evaluate("""async () => {
            const s = document.createElement("script");
            s.textContent = "window.injected = true";
            document.body.append(s);
            document.body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: rgb(255, 0, 0)">x</p>');
            const img = new Image();
            img.src = "http://127.0.0.2:9/pixel.png";
            document.body.append(img);
            try { await fetch("http://127.0.0.2:9/steal"); } catch (e) { window.fetchFailed = String(e); }
        }""")
        page.wait_for_timeout(300)
        assert page.evaluate("window.injected") is None
        assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != "rgb(255, 0, 0)"
        assert page.evaluate("window.fetchFailed")
        ctx.close()
        browser.close()
    seen = "\n".join(browsertest.CSP_VIOLATIONS)
    for directive in ("script-src-elem", "style-src-attr", "img-src", "connect-src"):
        assert f"gazepref-csp-violation: {directive} blocked" in seen, seen
    browsertest.CSP_VIOLATIONS.clear()  # the breaches were this test's own


# --------------------------------------------------------------------------- participant tokens


def token_payload(token: str) -> bytes:
    """What a participant token carries, as anyone who sees it (a proxy's log of a beacon's query
    string) can read it: itsdangerous's base64 payload before the signature (zlib when it starts
    with '.')."""
    body = token.rsplit(".", 1)[0]
    packed = body.lstrip(".")
    raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    return zlib.decompress(raw) if body.startswith(".") else raw


def export_texts(client, researcher) -> dict[str, str]:
    """Every file of the dashboard's exports (Parquet and IFLLM layout, with the demographics) as
    text: CSV, JSON and README files as written, Parquet tables as CSV."""
    assert login(client, *researcher).status_code == 302
    texts = {}
    for fmt in ("parquet", "ifllm"):
        r = client.get(f"/admin/studies/test-study/export?format={fmt}&demographics=1")
        assert r.status_code == 200
        zf = zipfile.ZipFile(io.BytesIO(r.data))
        for name in zf.namelist():
            data = zf.read(name)
            texts[f"{fmt}:{name}"] = (pd.read_parquet(io.BytesIO(data)).to_csv() if name.endswith(".parquet")
                                      else data.decode("utf-8", "replace"))
    return texts


def test_a_participant_token_carries_nothing_an_export_holds(app, researcher, dbs):
    """Beacons send the token in the query string, which a reverse proxy may log with the client's
    address: its payload (signed, not encrypted) holds the row id and a keyed digest of the
    pseudonym, neither the pseudonym (nor the prefix the dashboard shows) nor anything of an
    exported file, so such a log cannot be joined to the research data."""
    w = Walker(app.test_client(), "P-TOKEN")
    w.arrive()
    w.consent()
    data = w.to_task()  # (the demographics step answered: the export's demographics.csv)
    w.chat_turn(data, 0, "How does sleep help memory?")
    batch = {"task": data["task"], "seq": 0, "origin": 1.7e12,
             "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    assert w.client.post(f"/api/ingest?token={data['token']}", json=batch).status_code == 200  # (as a beacon)
    p = dbs.scalars(select(store.Participant)).one()
    payload = token_payload(data["token"])
    fields = json.loads(payload)
    assert set(fields) == {"p", "d"} and fields["p"] == p.id, fields
    for secret in (p.pseudonym, p.pseudonym[:12], p.pseudonym[:8], "P-TOKEN"):
        assert secret.encode() not in payload and secret not in data["token"]
    texts = export_texts(app.test_client(), researcher)
    assert any(p.pseudonym in t for t in texts.values()), "the exports name the participant"
    assert "test-study/demographics.csv" in {n.split(":", 1)[1] for n in texts}
    for name, text in texts.items():
        assert fields["d"] not in text and data["token"] not in text, name


@pytest.fixture
def token_app(make_app, database, tmp_path):
    from gazetest import webcam_toml

    return make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "cam.toml")),
                    **({"DATABASE_URL": database} if database else {}))


def test_only_the_token_of_the_rows_participant_is_accepted(token_app):
    """On both databases (the pseudonym is checked in Python on the row the lookups read, on
    PostgreSQL in the statement that takes the rate-limit token): a token signed for the row id
    with another pseudonym's digest is refused on every path (chat, ingest also from a beacon's
    query string, frames, the camera-error note); the page's own token is accepted, and so is a
    token of the id-only form: these databases never give a row id to another participant."""
    pytest.importorskip("mediapipe")
    from gazetest import answer_step, post_frames, to_calibration

    client = token_app.test_client()
    to_calibration(client, "P-DIGEST")
    assert answer_step(client, {"outcome": "no-camera"}).status_code == 302
    answer_step(client, {"understand_before": "3"})
    data = page_data(client.get("/step").text)
    pid = json.loads(token_payload(data["token"]))["p"]  # (the PostgreSQL server is shared by the session's tests)
    batch = {"task": data["task"], "seq": 0, "origin": 1.7e12,
             "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}

    def answers(token, seq):
        head = {"X-Participant-Token": token}
        return [
            client.post(data["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=head).status_code,
            client.post("/api/ingest", json=batch | {"seq": seq}, headers=head).status_code,
            client.post(f"/api/ingest?token={token}", json=batch | {"seq": seq + 10}).status_code,
            post_frames(client, token, {"phase": "setup", "t": [0.0]}, [jpeg(moving(0))]).status_code,
            client.post("/api/gaze/camera-error", json={"reason": "denied"}, headers=head).status_code,
        ]

    other = signed_token({"p": pid, "d": "0" * 24})  # (a digest's length)
    assert answers(other, 0) == [401] * 5
    assert answers(data["token"], 0) == [200] * 5
    assert answers(legacy_token(pid), 1) == [200] * 5
    assert store.reuses_ids(token_app.extensions["gazepref"].engine, "participants") is False
