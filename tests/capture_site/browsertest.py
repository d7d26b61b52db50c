"""Chromium for the study-site browser tests (``@pytest.mark.browser``), watched for breaches of
the site's Content-Security-Policy.

Every browser test opens its pages in a context from :func:`new_context`: what the policy blocked
there (a script, a style, a picture, a connection, a worker, WebAssembly) is collected in
:data:`CSP_VIOLATIONS`, and the ``csp_violations`` fixture of ``conftest.py`` (automatic for the
``browser`` tests) fails the test at its end when any was. A violation is taken both from the
page's ``securitypolicyviolation`` event (which names the directive and the blocked address) and
from Chromium's own console report ("... violates the following Content Security Policy
directive ..."), which also covers a worker's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: what the pages of the running test broke of the policy (emptied before each browser test)
CSP_VIOLATIONS: list[str] = []

_MARK = "gazepref-csp-violation:"
_WATCH = """addEventListener("securitypolicyviolation", (e) => console.error(
  `%s ${e.effectiveDirective} blocked ${e.blockedURI || "(inline)"} at ${e.sourceFile || location.href}:${e.lineNumber}`
  + (e.sample ? ` (${e.sample})` : "")), true);""" % _MARK


def require_chromium() -> None:
    """Skip the test where Chromium is missing (fail it on CI)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs /usr/bin/chromium for the browser tests (make browser)")
        pytest.skip("/usr/bin/chromium is missing (run `make browser`)")


_PLAYWRIGHT = None


def shared_playwright():
    """The test module's Playwright (a started ``sync_playwright``), started on first use: its
    driver starts once per module, not once per test (its sync API allows one at a time in a
    thread). The ``module_playwright`` fixture of conftest.py stops it at the module's end. Until
    then the thread counts as running an asyncio loop (Playwright's sync API marks it so between
    calls): a later test of the same module fails in ``sync_playwright()`` ("inside the asyncio
    loop") or ``asyncio.run``, so a module that needs those does not use this one."""
    global _PLAYWRIGHT
    if _PLAYWRIGHT is None:
        from playwright.sync_api import sync_playwright

        _PLAYWRIGHT = sync_playwright().start()
    return _PLAYWRIGHT


def stop_playwright() -> None:
    """Stop :func:`shared_playwright`'s driver, if started."""
    global _PLAYWRIGHT
    if _PLAYWRIGHT is not None:
        pw, _PLAYWRIGHT = _PLAYWRIGHT, None
        pw.stop()


def launch(pw, extra_args: list[str] | tuple[str, ...] = ()):
    """Headless Chromium (``pw``: a sync_playwright object) with the tests' flags and ``extra_args``."""
    require_chromium()
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=[*ARGS, *extra_args], headless=True)


def _console(msg) -> None:
    text = msg.text
    if text.startswith(_MARK) or "Content Security Policy" in text:
        where = (msg.location or {}).get("url", "")
        CSP_VIOLATIONS.append(f"{text} [{where}]" if where and where not in text else text)


def watch_csp(ctx) -> None:
    """Collect in :data:`CSP_VIOLATIONS` what the context's pages break of the site's policy."""
    ctx.add_init_script(_WATCH)
    ctx.on("console", _console)


#: how long a Playwright call of a browser test waits for its page by default (ms): an upper
#: bound, which a passing step is far from; ample because CI runs the suite on two workers on two
#: cores, where a page's navigation under the other worker's load once took more than 10 s
TIMEOUT_MS = 30_000


def new_context(browser, **kwargs):
    """A browser context (``browser.new_context(**kwargs)``) watched by :func:`watch_csp`, its
    pages waiting up to :data:`TIMEOUT_MS` by default."""
    ctx = browser.new_context(**kwargs)
    ctx.set_default_timeout(TIMEOUT_MS)
    watch_csp(ctx)
    return ctx


def stop_the_clock(page) -> None:
    """The page's clock (Playwright's, for its context's pages, also those loaded later) stands
    still from now on: their timers run only when the test moves it on (``page.clock.run_for``),
    so a timer set for n ms fires within n ms of clock time or not at all (a clock left running,
    as ``clock.install`` alone leaves it, would let a slower timer fire by itself while the test
    waits)."""
    page.clock.install()
    page.clock.pause_at(int(time.time() * 1000) + 1000)


def wait_for_function(page, expression: str, timeout: float = TIMEOUT_MS, interval_ms: float = 50) -> object:
    """Wait until the JavaScript ``expression`` is truthy in ``page`` (timeout in ms, as
    Playwright's); returns its value.

    Playwright's own ``page.wait_for_function`` evaluates its predicate with ``eval`` in the
    page, which the site's policy (no ``'unsafe-eval'``) refuses: this asks from the test side
    (``page.evaluate`` runs through DevTools, outside the page's policy), again across a
    navigation. An expression that reads a property of an element or object the page does not
    have yet (``TypeError: Cannot read properties of null``: the previous page is still shown)
    counts as not yet true, as Playwright's own wait treats a throwing predicate."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout / 1000
    last_error = ""
    while True:
        try:
            value = page.evaluate(expression)
        except Error as e:  # the page navigated meanwhile (ask the new one), or is not there yet
            if not any(s in str(e) for s in ("context was destroyed", "navigat", "Cannot read properties of")):
                raise
            value, last_error = None, str(e).splitlines()[0]
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} ms for {expression}" + (f" (last: {last_error})" if last_error else ""))
        page.wait_for_timeout(interval_ms)
