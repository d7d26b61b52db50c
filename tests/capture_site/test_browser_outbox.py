"""The telemetry outbox (``static/outbox.js``) in headless Chromium: each page load stores its
unsent batches under its own key, and other page loads adopt what a page left stored (a window
that died without unloading, the former single per-task key), sending each batch with its own
origin and seq once."""
from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site.serving import BackgroundServer
from browsertest import new_context, wait_for_function
from test_browser import _page, browser, ready, to_first_task, wait_outbox_empty  # noqa: F401

pytestmark = pytest.mark.browser


def _stored(app) -> dict[tuple[float, int], set[str]]:
    """(page load's origin, seq) -> the streams stored of that batch, for the one task."""
    with app.extensions["gazepref"].sessions() as s:
        task = s.scalars(select(store.Task)).one()
        rows = s.execute(select(store.StreamChunk.clock_origin_epoch_ms, store.StreamChunk.seq,
                                store.StreamChunk.stream).where(store.StreamChunk.task_id == task.id)).all()
    out: dict[tuple[float, int], set[str]] = {}
    for origin, seq, stream in rows:
        out.setdefault((round(origin, 3), seq), set()).add(stream)
    return out


def _wait_stored(app, batches: set[tuple[float, int]], timeout: float = 45.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored(app)
        if batches <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.3)


def _unsent(pg) -> list[tuple[float, int]]:
    """(origin, seq) of the page's telemetry batches not yet acknowledged."""
    rows = pg.evaluate("window.gazepref.recorder.outbox.box.items.map((i) => { const b = JSON.parse(i.json); "
                       "return [b.origin, b.seq]; })")
    return [(round(o, 3), s) for o, s in rows]


def _moves(pg, x: int, y: int, n: int = 6):
    pg.bring_to_front()
    for i in range(n):
        pg.mouse.move(x + 7 * i, y)
        pg.wait_for_timeout(30)
    pg.evaluate("window.gazepref.recorder.flush()")  # one batch, queued (and stored) at once


def test_batches_of_a_window_that_dies_offline_reach_the_server_once(browser, app):
    """Two windows of one task, offline, each store batches (alternately); the first dies without
    unloading (its renderer crashes); the second comes back online and sends its own batches and
    the dead window's, each once with its own origin and seq."""
    with BackgroundServer(app) as url:
        ctx = new_context(browser, viewport={"width": 1280, "height": 900}, base_url=url)
        first = ctx.new_page()
        to_first_task(first, "TWO-WINDOWS")
        ready(first)
        second = ctx.new_page()
        second.goto("/step")
        ready(second)
        for pg in (first, second):
            wait_outbox_empty(pg)
        ctx.set_offline(True)
        for k in range(2):
            _moves(first, 100 + 100 * k, 200)
            _moves(second, 100 + 100 * k, 400)
        lost = _unsent(first)
        waiting = _unsent(second)
        assert len(lost) >= 2 and len(waiting) >= 2
        assert {o for o, _ in lost}.isdisjoint({o for o, _ in waiting})  # two page loads
        for batches in (lost, waiting):  # each page load numbers its own batches: no gap left by the other's
            seqs = sorted(seq for _, seq in batches)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (lost, waiting)
        first.evaluate("addEventListener('pagehide', () => localStorage.setItem('test:pagehide', '1'))")
        try:  # a debug URL: the window's renderer crashes, no pagehide, no beacon, nothing saved
            first.goto("chrome://crash", timeout=5000)
        except PlaywrightError:
            pass
        wait_for_function(second, "true")
        assert second.evaluate("localStorage.getItem('test:pagehide')") is None
        first.close()  # (the dead tab)
        ctx.set_offline(False)
        stored = _wait_stored(app, set(lost) | set(waiting))
        assert set(lost) <= stored.keys(), "the dead window's batches were lost"
        assert set(waiting) <= stored.keys()
        assert all("mouse" in stored[b] for b in lost + waiting)
        with app.extensions["gazepref"].sessions() as s:
            mouse = store.read_stream(s, s.scalars(select(store.Task)).one(), "mouse").to_pandas()
        points = list(zip(mouse["x"], mouse["y"]))
        for x, y in [(100, 200), (235, 200), (100, 400), (235, 400)]:
            assert points.count((x, y)) == 1, (x, y)
        wait_outbox_empty(second)
        assert second.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('gazepref:outbox:'))") == []
        ctx.close()


def test_an_outbox_stored_under_the_former_single_key_is_sent(browser, app):
    """A page of the site's previous version (another tab) left its batch under the former key
    ``gazepref:outbox:<task>`` while this page, offline, stores its own: the batch is sent with its
    own origin and seq, and its key goes once it is acknowledged."""
    for pg in _page(browser, app):
        to_first_task(pg, "OLD-OUTBOX")
        ready(pg)
        wait_outbox_empty(pg)
        task = pg.evaluate("window.gazepref.recorder.task")
        box = pg.evaluate("window.gazepref.recorder.outbox.box")
        origin = 1_700_000_000_123.5
        batch = {"task": task, "seq": 7, "origin": origin, "streams": {"events": {
            "t": [5.0], "type": ["click"], "target": ["window"], "x": [11.0], "y": [22.0], "detail": ["old-page"]}}}
        old = {"token": box["token"], "url": box["url"], "items": [{"seq": 7, "json": json.dumps(batch)}]}
        pg.route("**/api/ingest*", lambda route: route.abort())  # this page's batches stay stored
        other = pg.context.new_page()  # another tab of the site, running no script of it
        other.goto("/static/favicon.svg")
        other.evaluate("([k, v]) => localStorage.setItem(k, v)", [f"gazepref:outbox:{task}", json.dumps(old)])
        for k in range(2):
            _moves(pg, 100 + 100 * k, 300)
            pg.wait_for_timeout(200)
        pg.unroute("**/api/ingest*")
        stored = _wait_stored(app, {(origin, 7)})
        assert stored.get((origin, 7)) == {"events"}
        wait_outbox_empty(pg)
        assert other.evaluate(f"localStorage.getItem('gazepref:outbox:{task}')") is None


def test_a_withdrawal_forgets_only_its_own_outbox_on_a_shared_browser(browser, app):
    """Two participants in one browser (a lab computer): A's page left a batch stored (under A's
    token); B starts, cannot send (connection down), and withdraws. B's final page removes B's
    stored batches but not A's, which A's next page sends to A's task with A's token."""
    for pg in _page(browser, app):
        to_first_task(pg, "LAB-A")
        ready(pg)
        wait_outbox_empty(pg)
        task = pg.evaluate("window.gazepref.recorder.task")
        box = pg.evaluate("window.gazepref.recorder.outbox.box")
        origin = 1_700_000_000_456.5
        batch = {"task": task, "seq": 3, "origin": origin, "streams": {"events": {
            "t": [5.0], "type": ["click"], "target": ["window"], "x": [1.0], "y": [2.0], "detail": ["a-left"]}}}
        key = f"gazepref:outbox:{task}:{origin}"
        pg.route("**/api/ingest*", lambda route: route.abort())  # nothing reaches the server now
        pg.evaluate("([k, v]) => localStorage.setItem(k, v)",
                    [key, json.dumps({"task": task, "token": box["token"], "url": box["url"],
                                      "items": [{"seq": 3, "json": json.dumps(batch)}]})])
        to_first_task(pg, "LAB-B")
        ready(pg)
        _moves(pg, 100, 300)
        assert pg.evaluate("window.gazepref.recorder.outbox.pending") >= 1
        b_token = pg.evaluate("window.gazepref.recorder.outbox.box.token")
        stored_tokens = ("Object.fromEntries(Object.keys(localStorage).filter((k) => k.startsWith('gazepref:outbox:'))"
                         ".map((k) => [k, JSON.parse(localStorage.getItem(k)).token]))")
        assert b_token in pg.evaluate(stored_tokens).values()
        pg.click("#withdraw-link")
        pg.click("#withdraw-confirm")
        pg.wait_for_url("**/withdrawn")
        left = pg.evaluate(stored_tokens)  # B's batches are gone, A's are kept (also A's page's last)
        assert key in left and set(left.values()) == {box["token"]}, left
        pg.unroute("**/api/ingest*")
        pg.goto("/?PROLIFIC_PID=LAB-A")  # A comes back: their page sends what they left
        ready(pg)
        assert _wait_stored(app, {(origin, 3)}).get((origin, 3)) == {"events"}


def test_a_stored_outbox_whose_token_is_refused_is_dropped_after_one_answer(browser, app):
    """A stored outbox whose token the server refuses (401: the participant withdrew, a forged or
    foreign token) is dropped whole at the first refusal: every batch of it has that token, so
    sending the others would only be refused too (a request each)."""
    for pg in _page(browser, app):
        to_first_task(pg, "REFUSED")
        ready(pg)
        wait_outbox_empty(pg)
        task = pg.evaluate("window.gazepref.recorder.task")
        url = pg.evaluate("window.gazepref.recorder.outbox.box.url")
        refused = []
        pg.on("request", lambda r: refused.append(r.url) if "/api/ingest" in r.url
              and r.headers.get("x-participant-token") == "not-a-token" else None)
        origin = 1_700_000_000_789.5
        items = [{"seq": s, "json": json.dumps({"task": task, "seq": s, "origin": origin, "streams": {}})}
                 for s in range(12)]
        key = f"gazepref:outbox:{task}:{origin}"
        other = pg.context.new_page()  # another tab: this page learns of the key by a storage event
        other.goto("/static/favicon.svg")
        other.evaluate("([k, v]) => localStorage.setItem(k, v)",
                       [key, json.dumps({"task": task, "token": "not-a-token", "url": url, "items": items})])
        wait_for_function(pg, f"localStorage.getItem('{key}') === null")
        pg.wait_for_timeout(300)
        assert len(refused) == 1, refused


def test_another_participants_stored_outbox_goes_to_their_task_with_their_token(browser, app):
    """Two participants in one browser (a lab computer, or a restart under another platform id):
    A's stored batch, adopted by B's pages, is sent with the token stored with it and lands in A's
    task; nothing is refused, and B's own batches go to B's task."""
    for pg in _page(browser, app):
        statuses = []
        pg.on("response", lambda r: statuses.append(r.status) if "/api/ingest" in r.url else None)
        to_first_task(pg, "SHARED-A")
        ready(pg)
        wait_outbox_empty(pg)
        a_task = pg.evaluate("window.gazepref.recorder.task")
        box = pg.evaluate("window.gazepref.recorder.outbox.box")
        origin = 1_700_000_000_321.5
        batch = {"task": a_task, "seq": 4, "origin": origin, "streams": {"events": {
            "t": [5.0], "type": ["click"], "target": ["window"], "x": [1.0], "y": [2.0], "detail": ["a-left"]}}}
        pg.route("**/api/ingest*", lambda route: route.abort())  # A's batch stays stored
        pg.evaluate("([k, v]) => localStorage.setItem(k, v)",
                    [f"gazepref:outbox:{a_task}:{origin}",
                     json.dumps({"task": a_task, "token": box["token"], "url": box["url"],
                                 "items": [{"seq": 4, "json": json.dumps(batch)}]})])
        to_first_task(pg, "SHARED-B")
        ready(pg)
        b_task = pg.evaluate("window.gazepref.recorder.task")
        assert b_task != a_task
        pg.unroute("**/api/ingest*")
        _moves(pg, 100, 300)
        wait_outbox_empty(pg)
        wait_for_function(pg, "!Object.keys(localStorage).some((k) => k.startsWith('gazepref:outbox:') && "
                              "JSON.parse(localStorage.getItem(k)).token !== window.gazepref.recorder.outbox.box.token)",
                          timeout=45_000)
        with app.extensions["gazepref"].sessions() as s:
            rows = set(s.execute(select(store.StreamChunk.task_id, store.StreamChunk.clock_origin_epoch_ms,
                                        store.StreamChunk.seq, store.StreamChunk.stream)).all())
        assert (a_task, origin, 4, "events") in rows
        assert any(t == b_task and st == "mouse" for t, _, _, st in rows)
        assert set(statuses) == {200}, statuses


_BARE = "http://outbox.test"


def _bare_outbox_page(browser):
    """A page of its own origin running only ``static/outbox.js`` (no site, no server): for the
    outbox's own storage behaviour, in a fraction of a study page's start-up."""
    from pathlib import Path

    js = (Path(__file__).parents[2] / "capture_site" / "static" / "outbox.js").read_text()
    ctx = new_context(browser)
    pg = ctx.new_page()
    pg.route(f"{_BARE}/", lambda r: r.fulfill(content_type="text/html", body=(
        '<!doctype html><div id="page-data"></div><script type="module">'
        'import { Outbox } from "/outbox.js"; window.Outbox = Outbox;</script>')))
    pg.route(f"{_BARE}/outbox.js", lambda r: r.fulfill(content_type="text/javascript", body=js))
    pg.goto(f"{_BARE}/")
    wait_for_function(pg, "!!window.Outbox")
    return ctx, pg


def test_a_draining_backlog_is_not_rewritten_per_acknowledgement_and_loses_nothing(browser):
    """A backlog stored while offline (40 batches) drains: the stored copy (one localStorage key,
    rewritten whole by each save: ~50-100 ms at the 4 MB bound, benchmarks/outbox_drain.py) is
    rewritten a few times for the whole drain, not once per acknowledgement; every batch is still
    stored when it is sent (nothing unacknowledged is lost to a reload), and the key goes at the end."""
    ctx, pg = _bare_outbox_page(browser)
    result = pg.evaluate("""async () => {
      window.fetch = () => Promise.reject(new TypeError("offline"));
      const box = new Outbox({ task: 1, token: "tok", url: "/api/ingest" });
      for (let i = 0; i < 40; i++) box.push({ task: 1, seq: i, origin: 1.5, streams: { pad: "x".repeat(500) } });
      let writes = 0; const lost = []; const sent = [];
      const setItem = Storage.prototype.setItem;
      Storage.prototype.setItem = function (k, v) { if (k === box.key) writes += 1; return setItem.call(this, k, v); };
      window.fetch = async (url, init) => {
        const body = await new Response(new Blob([init.body]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
        const seq = JSON.parse(body).seq;
        const stored = JSON.parse(localStorage.getItem(box.key) || '{"items": []}').items.map((i) => i.seq);
        if (!stored.includes(seq)) lost.push(seq);
        sent.push(seq);
        return new Response("{}", { status: 200 });
      };
      box.retryNow();
      while (box.pending) await new Promise((r) => setTimeout(r, 5));
      Storage.prototype.setItem = setItem;
      return { writes, lost, sent, left: localStorage.getItem(box.key) };
    }""")
    ctx.close()
    assert result["sent"] == list(range(40))
    assert result["lost"] == [], "batches sent while no longer stored"
    assert result["left"] is None
    assert result["writes"] <= 3, result["writes"]
