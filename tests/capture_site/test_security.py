"""The site's Content-Security-Policy (capture_site/security.py): the header on the participant
pages, the dashboard and MTurk's framable pages, and what it stops in a real browser."""
from __future__ import annotations

import pytest

import browsertest
from gazepref.capture_site.config import MTURK_SUBMIT_HOSTS
from gazepref.capture_site.serving import BackgroundServer
from sitetest import csp_breaches
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
