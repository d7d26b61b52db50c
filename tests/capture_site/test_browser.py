"""A whole participant session in headless Chromium (mouse only), then the export.

3 pairwise and 2 pointwise turns with ratings and free text, a reload in the middle of a turn,
post-task questions and the completion code; the export then holds the turns, ratings, mouse
samples and layout, and the mouse sample recorded over a known word maps back to that word.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site.exporting import export_study
from gazepref.capture_site.hits import word_at
from gazepref.datasets.store_recording import StoreRecording
from gazepref.capture_site.serving import BackgroundServer
from browsertest import launch, new_context, require_chromium, wait_for_function

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture
def page(browser, app):
    yield from _page(browser, app)


def _page(browser, app):
    with BackgroundServer(app) as url:
        ctx = new_context(browser, viewport={"width": 1280, "height": 900}, base_url=url)
        pg = ctx.new_page()
        yield pg
        ctx.close()


def wait_outbox_empty(page, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.evaluate("window.gazepref.recorder.flush()")
        if page.evaluate("window.gazepref.recorder.outbox.pending") == 0:
            return
        time.sleep(0.2)
    raise AssertionError("telemetry outbox did not drain")


def continue_with(page, fields: dict | None = None):
    for name, value in (fields or {}).items():
        loc = page.locator(f"[name='{name}']")
        if loc.first.get_attribute("type") == "radio":
            page.locator(f"[name='{name}'][value='{value}']").check()
        else:
            loc.fill(value)
    page.click("#continue")


def to_first_task(page, worker: str):
    """From the Prolific link through consent, the skipped demographics and the questions before
    the first task (the mouse-only test study)."""
    page.goto(f"/?PROLIFIC_PID={worker}")
    page.click("#agree")
    page.click("#skip")
    continue_with(page)
    continue_with(page, {"understand_before": "2"})


def ready(page):
    wait_for_function(page, "window.gazepref !== undefined")


def send(page, text: str, index: int):
    ready(page)
    page.fill("#message", text)
    page.click("#send")
    wait_for_function(page, f"window.gazepref.state().current && window.gazepref.state().current.index === {index}")


def rate(page, likert: list[int], *, choice: int | None = None, better: bool | None = None, feedback: str = ""):
    for pos, value in enumerate(likert):
        page.check(f"[name='likert-{pos}'][value='{value}']")
    if choice is not None:
        page.check(f"[name='choice'][value='{choice}']")
        page.select_option("[name='strength']", "2")
    if better is not None:
        page.check(f"[name='better'][value='{1 if better else 0}']")
    if feedback:
        page.fill("[name='feedback']", feedback)
    rated = int(page.text_content("#rated-count"))
    page.click("#submit-rating")
    wait_for_function(page, f"document.querySelector('#rated-count').textContent === '{rated + 1}'")


def copied(page) -> str:
    """A passage of the answers as the post-task page shows them (what a participant copies)."""
    return page.locator(".transcript .markdown [data-paragraph]").first.text_content()


def hover_word(page, position: int, word: int) -> dict:
    span = page.locator(f"#response-{position} span.w[data-i='{word}']")
    box = span.bounding_box()
    # a whole CSS pixel: Chromium's mouse events carry whole-pixel coordinates, so a point with a
    # fraction (the word's exact centre) is recorded up to 1.4 px away from where it was aimed,
    # and the d2 < 1 check below failed whenever the randomly placed answer put the word there
    cx, cy = round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2)
    page.mouse.move(cx - 40, cy + 30, steps=4)
    page.mouse.move(cx, cy, steps=6)
    page.wait_for_timeout(100)
    return {"x": cx, "y": cy, "text": span.text_content(), "s": int(span.get_attribute("data-s")),
            "e": int(span.get_attribute("data-e"))}


# what happens to the Finish hint once the page is parsed, in order: a text written, a role set (a
# live region, "status", read out at each page load would be noise; its later changes are news)
HINT_CHANGES_JS = """window.hintChanges = [];
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target.closest ? r.target.closest("#finish-hint") : null;
    if (!el || document.readyState === "loading") continue;
    if (r.type === "attributes") hintChanges.push(["role", el.getAttribute("role")]);
    else if (r.addedNodes.length) hintChanges.push(["text", r.addedNodes[0].textContent]);
  }
}).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["role"] });"""


def test_full_mouse_only_session(page, app, tmp_path):
    page.add_init_script(HINT_CHANGES_JS)
    page.goto("/?PROLIFIC_PID=E2E-WORKER&STUDY_ID=STUDY9&SESSION_ID=SESS9")
    page.click("#agree")
    continue_with(page, {"age": "31"})  # demographics
    continue_with(page)  # instructions
    continue_with(page, {"understand_before": "2"})

    # pairwise task: 3 turns, a reload while a turn waits for its rating
    ready(page)  # beside the greyed-out Finish: why (the turn counter is out of sight after a few turns)
    assert page.is_disabled("#finish") and page.text_content("#finish-hint") == "Rate 2 more turns to finish this task."
    send(page, "How does sleep help memory?", 0)
    known = hover_word(page, 0, 5)
    page.locator("#response-1 p").first.click(click_count=3)  # select a paragraph and copy it
    page.keyboard.press("Control+C")
    page.wait_for_timeout(400)
    rate(page, [4, 2], choice=0, feedback="The left one is clearer.")
    assert page.text_content("#finish-hint") == "Rate 1 more turn to finish this task."
    # written once as the page opened, not yet a live region (no announcement at load); the
    # count after the rating is announced (politely)
    assert page.evaluate("hintChanges") == [["text", "Rate 2 more turns to finish this task."], ["role", "status"],
                                            ["text", "Rate 1 more turn to finish this task."]]
    send(page, "How many hours of sleep does an adult need?", 1)
    page.check("[name='likert-0'][value='3']")  # chosen, not yet submitted
    page.check("[name='choice'][value='1']")
    page.select_option("[name='strength']", "3")
    page.fill("[name='feedback']", "The right one gives numbers.")
    page.reload()
    wait_for_function(page, "window.gazepref.state().current && window.gazepref.state().current.index === 1")
    assert page.text_content("#current-prompt") == "How many hours of sleep does an adult need?"
    # the reload kept what was chosen and typed for this turn
    assert page.is_checked("[name='likert-0'][value='3']") and page.is_checked("[name='choice'][value='1']")
    assert page.input_value("[name='strength']") == "3"
    assert page.input_value("[name='feedback']") == "The right one gives numbers."
    assert not page.locator("[name='likert-1']:checked").count()
    page.check("[name='likert-1'][value='5']")
    page.click("#submit-rating")
    wait_for_function(page, "document.querySelector('#rated-count').textContent === '2'")
    assert not page.evaluate("Object.keys(localStorage).some(k => k.startsWith('gazepref:rating:'))")  # cleared
    assert page.is_hidden("#finish-hint") and page.is_enabled("#finish")
    send(page, "Any tips to sleep better?", 2)
    assert page.is_disabled("#finish") and "Submit your rating of this turn" in page.text_content("#finish-hint")
    assert not page.locator("#rating input:checked").count() and page.input_value("[name='feedback']") == ""
    rate(page, [5, 4], choice=0)
    wait_outbox_empty(page)
    page.click("#finish")
    continue_with(page, {"summary": "Sleep consolidates memory.", "understand_after": "4",
                         "copy_sentence": copied(page), "attention": "2"})

    # pointwise task: 2 turns
    continue_with(page, {"understand_before": "3"})
    send(page, "Why do volcanoes erupt?", 0)
    rate(page, [4], feedback="Good overview.")
    send(page, "How do scientists predict eruptions?", 1)
    rate(page, [5], better=True)
    wait_outbox_empty(page)
    page.click("#finish")
    continue_with(page, {"summary": "Magma rises.", "understand_after": "5",
                         "copy_sentence": copied(page), "attention": "2"})
    assert page.text_content("#completion-code").strip() == "TEST-CODE-42"

    with app.extensions["gazepref"].sessions() as s:
        p = s.scalars(select(store.Participant)).one()
        assert "E2E-WORKER" not in p.pseudonym and p.consent
        turns = [t for task in p.tasks for t in task.turns]
        assert [t.kind for t in turns] == ["pairwise"] * 3 + ["pointwise"] * 2
        assert [r.likert for r in turns[0].responses] == [4, 2] and turns[0].choice == 0
        assert turns[0].feedback_text == "The left one is clearer." and turns[0].choice_strength == 2
        assert turns[4].better_than_previous is True
        assert [r.likert for r in turns[1].responses] == [3, 5] and turns[1].choice_strength == 3
        assert turns[1].feedback_text == "The right one gives numbers."
        assert all(t.t_decided > t.t_shown >= 0 for t in turns)
        first = p.tasks[0]
        stored = {name: store.read_stream(s, first, name).to_pandas() for name in ("mouse", "layout", "scroll", "events")}
        first_text = first.turns[0].responses[0].text
        derived = StoreRecording(s, p.study).streams(f"{p.pseudonym}/{first.id}")["mouse"].to_pandas()
        export_study(s, p.study, tmp_path / "export", "parquet")
        export_study(s, p.study, tmp_path / "export-ifllm", "ifllm")

    # the mouse sample recorded at the centre of the known word maps back to that word
    mouse, layout = stored["mouse"], stored["layout"]
    assert len(mouse) > 10 and (layout["kind"] == "word").sum() > 50
    events = stored["events"]
    assert {"click", "rate", "choose", "hover_enter", "hover_leave", "shown", "select", "copy"} <= set(events["type"])
    assert events[events["type"] == "copy"]["target"].iloc[0] == "response:1"
    # where the participant typed: a webcam calibration sample (those in the rating form's feedback
    # field, target "controls", are recorded too but never calibrate)
    caret = events[events["type"] == "caret"]
    assert set(caret["target"]) == {"composer", "controls"} and caret[["x", "y"]].notna().all().all()
    entered = set(events[events["type"] == "hover_enter"]["target"])
    assert {"response:0", "response:0/p0"} <= entered
    d2 = (mouse["x"] - known["x"]) ** 2 + (mouse["y"] - known["y"]) ** 2
    assert d2.min() < 1.0
    sample = mouse.loc[d2.idxmin()]
    hit = word_at(layout, stored["scroll"], sample["t"], sample["x"], sample["y"])
    assert hit is not None and hit.target == "response:0" and hit.index == 5 and hit.turn == 0
    assert (hit.char_start, hit.char_end) == (known["s"], known["e"])
    assert first_text[hit.char_start:hit.char_end] == known["text"]
    # ... and so does the recording's derive step, for the whole stream
    on_word = derived[derived.t == sample["t"]].iloc[0]
    assert on_word.turn == 0 and on_word.position == 0 and on_word.word == 5
    assert (on_word.char_start, on_word.char_end) == (known["s"], known["e"])
    assert known["s"] <= on_word.char_index < known["e"]

    # the export holds the turns, ratings, mouse samples and layout
    export = tmp_path / "export"
    exported = pd.read_parquet(export / "turns.parquet").sort_values(["task_id", "index"])
    responses = pd.read_parquet(export / "responses.parquet")
    assert len(exported) == 5 and sorted(exported["kind"]) == ["pairwise"] * 3 + ["pointwise"] * 2
    likert = responses.pivot(index="turn_id", columns="position", values="likert")
    assert likert.loc[exported["turn_id"], 0].tolist() == [4, 3, 5, 4, 5]
    tasks = pd.read_parquet(export / "tasks.parquet")
    assert tasks["answers"].str.contains("understand_after").all()
    ex_mouse = pd.read_parquet(export / "streams" / "mouse.parquet")
    ex_layout = pd.read_parquet(export / "streams" / "layout.parquet")
    ex_scroll = pd.read_parquet(export / "streams" / "scroll.parquet")
    assert len(ex_mouse) > len(mouse)  # both tasks
    assert (ex_layout["kind"] == "word").sum() > (layout["kind"] == "word").sum()
    first_id = exported.iloc[0]["task_id"]
    ex_hit = word_at(ex_layout[ex_layout["task_id"] == first_id], ex_scroll[ex_scroll["task_id"] == first_id],
                     sample["t"], sample["x"], sample["y"])
    assert ex_hit is not None and (ex_hit.char_start, ex_hit.char_end) == (known["s"], known["e"])
    # ... and so does the IFLLM-layout export (rel_mouse_left: x, y, window, char_index, t, ...)
    row = _ifllm_rel_row_at(tmp_path / "export-ifllm", sample["t"])
    assert row is not None and known["s"] <= int(row[3]) < known["e"] and known["text"][:3] in row[2]


class FailOnce:
    def __init__(self):
        self.calls = 0

    def generate(self, messages):
        self.calls += 1
        if self.calls == 1:
            from gazepref.llm import BackendError

            raise BackendError("model server restarting")
        return "A calm answer about sleep and memory."


def test_backend_failure_offers_retry_and_keeps_the_message(browser, make_app):
    """With the keyboard only: Enter sends, the failed send puts the focus on "Try again" and the
    answer, once there, takes the focus (the disabled message box had lost it to the page). A
    click from the keyboard is recorded without a point (its (0, 0) is no place the participant
    looked at: the gaze calibration from clicks must not use it)."""
    backend = FailOnce()
    app = make_app(LLM_BACKENDS={"concise": backend})
    for pg in _page(browser, app):
        to_first_task(pg, "RETRY-WORKER")
        ready(pg)
        pg.focus("#message")
        pg.keyboard.type("How does sleep help memory?")
        # an input method's Enter (it picks a word being composed) does not send
        pg.evaluate("""document.querySelector('#message').dispatchEvent(new KeyboardEvent('keydown',
            {key: 'Enter', isComposing: true, bubbles: true, cancelable: true}))""")
        pg.wait_for_timeout(300)
        assert backend.calls == 0 and pg.is_hidden("#waiting")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#retry:not([hidden])")
        assert "try again" in pg.text_content("#send-error")
        assert pg.input_value("#message") == "How does sleep help memory?"
        assert pg.evaluate("document.activeElement.id") == "retry"
        pg.keyboard.press("Space")
        wait_for_function(pg, "window.gazepref.state().current !== null")
        assert pg.is_hidden("#retry") and pg.is_hidden("#send-error")
        texts = [pg.text_content(f"#response-{i}") for i in (0, 1)]
        assert "A calm answer about sleep and memory." in texts
        assert pg.evaluate("document.activeElement.id") == "response-0"
        pg.mouse.click(300, 200)  # a click with the mouse keeps its point
        wait_outbox_empty(pg)
        with app.extensions["gazepref"].sessions() as s:
            events = store.read_stream(s, s.scalars(select(store.Task)).one(), "events").to_pandas()
        clicks = events[events["type"] == "click"]
        assert clicks["detail"].iloc[0] == "retry" and clicks[["x", "y"]].iloc[0].isna().all()
        assert len(clicks) == 2 and clicks[["x", "y"]].iloc[1].tolist() == [300.0, 200.0]



def test_a_message_answered_but_cut_off_is_not_offered_again_after_a_reload(browser, app):
    """The connection drops after the server stored the answer (its reply never reaches the page,
    which offers "Try again" and keeps the message), and the participant reloads instead: the new
    page shows the answer to rate, and after the rating the message box is empty, not holding the
    message already sent (a second Send asked it twice). A draft not yet sent stays."""
    for pg in _page(browser, app):
        to_first_task(pg, "RELOAD-MID-ANSWER")
        ready(pg)
        answered = []

        def store_then_drop(route):
            answered.append(route.fetch().status)  # the server answers and stores the turn ...
            route.abort()  # ... and the connection drops before its reply arrives

        pg.route("**/api/tasks/*/turns", store_then_drop)
        pg.fill("#message", "How does sleep help memory?")
        pg.click("#send")
        pg.wait_for_selector("#retry:not([hidden])")
        assert answered == [200] and pg.input_value("#message") == "How does sleep help memory?"
        pg.unroute("**/api/tasks/*/turns")
        pg.reload()
        wait_for_function(pg, "window.gazepref && window.gazepref.state().current "
                              "&& window.gazepref.state().current.index === 0")
        assert pg.text_content("#current-prompt") == "How does sleep help memory?"
        rate(pg, [4, 2], choice=0)
        assert pg.input_value("#message") == ""
        pg.fill("#message", "Another question, typed")
        pg.reload()
        ready(pg)
        assert pg.input_value("#message") == "Another question, typed"

def test_a_page_reloaded_while_its_message_is_answered_waits_for_that_answer(browser, make_app):
    """Send, then a reload while the models answer (a slow backend): the new page shows the
    message as being answered (not as an unsent draft whose Send got "still being answered, press
    Try again", and whose edit was then lost to the stored turn) and shows the answer once it is
    in; the models were asked once, one turn is stored."""
    from sitetest import HeldBackend

    held = HeldBackend()
    app = make_app(LLM_BACKENDS={"concise": held})
    for pg in _page(browser, app):
        to_first_task(pg, "RELOAD-WHILE-ANSWERED")
        ready(pg)
        pg.fill("#message", "How does sleep help memory?")
        pg.click("#send")
        assert held.called.wait(30)
        pg.reload()
        ready(pg)
        pg.wait_for_selector("#waiting:not([hidden])")
        assert pg.is_disabled("#message") and pg.input_value("#message") == "How does sleep help memory?"
        assert pg.is_hidden("#send-error")
        held.release.set()
        wait_for_function(pg, "window.gazepref.state().current && window.gazepref.state().current.index === 0")
        assert pg.text_content("#current-prompt") == "How does sleep help memory?" and pg.is_hidden("#waiting")
    assert held.calls == 1
    with app.extensions["gazepref"].sessions() as s:
        assert [t.prompt for t in s.scalars(select(store.Turn))] == ["How does sleep help memory?"]


def test_a_message_sent_in_a_second_tab_while_the_first_ones_is_answered_is_kept(browser, make_app):
    """Two tabs of one task: the first sends a message; the second, meanwhile, another. The
    second waits while the first's is answered, then (its turn taken by the first's) reloads
    showing the first's turn to rate, with its own message still in the box. Before, its text
    was gone (the first's success cleared the draft both share) with only a moment's notice."""
    from sitetest import HeldBackend

    held = HeldBackend()
    app = make_app(LLM_BACKENDS={"concise": held})
    for first in _page(browser, app):
        to_first_task(first, "TWO-TABS-TWO-MESSAGES")
        ready(first)
        second = first.context.new_page()
        second.goto(first.url)
        ready(second)
        first.fill("#message", "How does sleep help memory?")
        first.click("#send")
        assert held.called.wait(30)
        second.fill("#message", "And what about dreams?")
        second.click("#send")
        second.wait_for_selector("#waiting:not([hidden])")
        second.evaluate("window.beforeReload = true")
        held.release.set()
        wait_for_function(first, "window.gazepref.state().current && window.gazepref.state().current.index === 0")
        # its next try finds the turn taken: the page is loaded again
        wait_for_function(second, "!window.beforeReload && window.gazepref && window.gazepref.state().current "
                                  "&& window.gazepref.state().current.index === 0")
        assert second.text_content("#current-prompt") == "How does sleep help memory?"
        assert second.input_value("#message") == "And what about dreams?"
    assert held.calls == 1


def test_unsent_batches_survive_a_dropped_connection_and_reload(browser, app):
    for pg in _page(browser, app):
        to_first_task(pg, "OFFLINE-WORKER")
        ready(pg)
        pg.route("**/api/ingest*", lambda route: route.abort())  # the connection drops
        for i in range(20):
            pg.mouse.move(100 + 10 * i, 300 + 5 * i)
            pg.wait_for_timeout(20)
        pg.evaluate("window.gazepref.recorder.flush()")
        pg.wait_for_timeout(300)
        pending = pg.evaluate("window.gazepref.recorder.outbox.pending")
        assert pending >= 1
        assert pg.evaluate("Object.keys(localStorage).some(k => k.startsWith('gazepref:outbox:'))")
        pg.unroute("**/api/ingest*")
        pg.fill("#message", "A question typed but not sent yet")
        pg.reload()  # the new page sends what the old one could not
        ready(pg)
        assert pg.input_value("#message") == "A question typed but not sent yet"  # and keeps the draft
        wait_outbox_empty(pg)
        with app.extensions["gazepref"].sessions() as s:
            task = s.scalars(select(store.Task)).one()
            mouse = store.read_stream(s, task, "mouse").to_pandas()
        assert {(100 + 10 * i, 300 + 5 * i) for i in (0, 10, 19)} <= set(zip(mouse["x"], mouse["y"]))
        assert not mouse.duplicated(["t", "x", "y"]).any()


def test_dragging_the_window_edge_loses_no_batch_and_words_follow_a_rewrap(browser, app):
    """Two long answers, ~60 resize events in a second: every batch is accepted (word boxes are
    measured once the size has settled, not 60 times), and when the answers re-wrap without a
    resize (the page narrows) the word boxes are measured again."""
    for pg in _page(browser, app):
        statuses = []
        pg.on("response", lambda r: statuses.append(r.status) if "/api/ingest" in r.url else None)
        to_first_task(pg, "RESIZE-WORKER")
        send(pg, "How does sleep help memory?", 0)
        pg.evaluate("""n => import('/static/layout.js').then(m => {
            const words = []; for (let i = 0; i < n; i++) words.push('word' + i + (i % 60 == 59 ? '.\\n\\n' : ''));
            for (const p of [0, 1]) m.renderText(document.getElementById('response-' + p), words.join(' '));
            window.gazepref.recorder.scheduleLayout(true); })""", 400)  # real answers are this long
        wait_outbox_empty(pg)
        pg.evaluate("""() => new Promise(res => { let n = 0; const f = () => {
            window.dispatchEvent(new Event('resize')); if (++n < 60) requestAnimationFrame(f); else res(); };
            requestAnimationFrame(f); })""")
        pg.mouse.move(320, 300, steps=5)
        pg.wait_for_timeout(400)  # the size has settled: one word snapshot
        wait_outbox_empty(pg)
        assert statuses and set(statuses) == {200}, statuses
        since = pg.evaluate("performance.now()")
        pg.evaluate("document.body.style.width = '900px'")  # the answers re-wrap, no resize event

        def stored_words() -> int:  # word boxes measured since the re-wrap, as the server stored them
            wait_outbox_empty(pg)
            with app.extensions["gazepref"].sessions() as s:
                layout = store.read_stream(s, s.scalars(select(store.Task)).one(), "layout").to_pandas()
            return int(((layout["kind"] == "word") & (layout["t"] >= since)).sum())

        deadline = time.monotonic() + 20  # the page sends them with its next batch (once a second)
        while stored_words() < 800 and time.monotonic() < deadline:
            pg.wait_for_timeout(200)
        assert stored_words() >= 800
        assert set(statuses) == {200}


def test_a_browser_without_compression_streams_still_sends_telemetry(browser, app):
    """Firefox < 113 and Safari < 16.4 lack CompressionStream: batches go as plain JSON."""
    for pg in _page(browser, app):
        pg.add_init_script("delete window.CompressionStream")
        to_first_task(pg, "OLD-BROWSER")
        ready(pg)
        assert pg.evaluate("typeof CompressionStream") == "undefined"
        for i in range(10):
            pg.mouse.move(200 + 10 * i, 300)
            pg.wait_for_timeout(20)
        wait_outbox_empty(pg)
        with app.extensions["gazepref"].sessions() as s:
            task = s.scalars(select(store.Task)).one()
            mouse = store.read_stream(s, task, "mouse").to_pandas()
        assert {(200 + 10 * i, 300) for i in (0, 9)} <= set(zip(mouse["x"], mouse["y"]))


def test_two_tabs_of_one_task_each_store_every_batch(browser, app):
    """The link resumes the same task in a second tab while the first is still open: each tab
    (page load) numbers its own batches, so they may share seqs, and every batch of both is
    stored, none taken as a replay (the server's chunk key has the page load's origin)."""
    with BackgroundServer(app) as url:
        ctx = new_context(browser, viewport={"width": 1280, "height": 900}, base_url=url)
        first = ctx.new_page()
        first.goto("/?PROLIFIC_PID=TWO-TABS")
        first.click("#agree")
        first.click("#skip")
        continue_with(first)
        continue_with(first, {"understand_before": "2"})
        ready(first)
        second = ctx.new_page()
        second.goto("/step")
        ready(second)
        batches = 0
        for k in range(3):
            for pg in (first, second):
                pg.bring_to_front()
                pg.mouse.move(100 + 40 * k, 200 + (pg is second) * 100)
                pg.mouse.move(120 + 40 * k, 210 + (pg is second) * 100, steps=3)
                wait_outbox_empty(pg)
                batches += 1
        with app.extensions["gazepref"].sessions() as s:
            task = s.scalars(select(store.Task)).one()
            keys = s.execute(select(store.StreamChunk.clock_origin_epoch_ms, store.StreamChunk.seq).where(
                store.StreamChunk.task_id == task.id, store.StreamChunk.stream == "mouse")).all()
        ctx.close()
    assert len(keys) == len(set(keys)) >= batches  # every tab's mouse batch stored, none taken as a replay
    by_origin: dict = {}
    for origin, seq in keys:
        by_origin.setdefault(origin, set()).add(seq)
    assert len(by_origin) == 2
    # the case at stake: the second tab numbers from the server's next seq while the first goes on
    # from its own, so both store batches of one seq (each kept: neither is the other's replay)
    first_seqs, second_seqs = by_origin.values()
    assert first_seqs & second_seqs, by_origin


def _ifllm_rel_row_at(folder, t: float):
    """The rel_mouse_left row of an IFLLM-layout export recorded at page time ``t``."""
    import csv

    for path in sorted(folder.glob("user_behavior/*/*/rel_mouse_left.csv")):
        with open(path, newline="") as fh:
            for row in csv.reader(fh):
                if abs(float(row[4]) - t) < 1e-3 and row[3]:
                    return row
    return None


def test_page_loses_no_batch_across_a_server_restart(browser, app):
    """gunicorn is sent SIGTERM in the middle of a task and restarted: the page's outbox gets 503
    (Retry-After) or no answer meanwhile, retries, and every batch is stored once."""
    import signal

    from sitetest import STUDY_TOML, free_port, serve_gunicorn

    port = free_port()
    instance = Path(app.instance_path)
    server = serve_gunicorn(instance, STUDY_TOML, port)
    ctx = new_context(browser, viewport={"width": 1280, "height": 900}, base_url=f"http://127.0.0.1:{port}")
    try:
        page = ctx.new_page()
        page.goto("/?PROLIFIC_PID=RESTART-WORKER&STUDY_ID=S&SESSION_ID=X")
        page.click("#agree")
        continue_with(page, {"age": "31"})
        continue_with(page)
        continue_with(page, {"understand_before": "2"})
        ready(page)

        def wiggle(seconds: float) -> None:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                page.mouse.move(200 + (i * 37) % 800, 200 + (i * 53) % 500, steps=3)
                page.wait_for_timeout(50)
                i += 1

        wiggle(2.5)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        wiggle(1.5)  # batches meet a draining server, then none
        server.wait(timeout=10)
        exited_s = time.monotonic() - t0
        wiggle(1.0)
        server = serve_gunicorn(instance, STUDY_TOML, port)
        wiggle(2.0)
        wait_outbox_empty(page, timeout=60)  # every batch acknowledged (stored or a duplicate)
    finally:
        ctx.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert exited_s < 5, exited_s
    with app.extensions["gazepref"].sessions() as s:
        task = s.scalars(select(store.Task)).one()
        seqs = sorted(set(s.scalars(select(store.StreamChunk.seq).where(store.StreamChunk.task_id == task.id))))
    assert len(seqs) >= 5 and seqs == list(range(len(seqs))), seqs  # every batch the page made is stored


def test_the_page_says_why_the_composer_is_gone_at_the_turn_limit(browser, make_app, tmp_path):
    from sitetest import study_variant

    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", max_turns="2")))
    for pg in _page(browser, app):
        to_first_task(pg, "LIMIT-WORKER")
        for i in range(2):
            send(pg, f"Question {i} about sleep", i)
            assert pg.is_hidden("#turn-limit")
            rate(pg, [4, 3], choice=0)
        assert pg.is_hidden("#composer") and pg.is_visible("#turn-limit")
        assert "most messages this task allows (2)" in pg.text_content("#turn-limit")


class CodeAnswer:
    """An answer with a code line longer than the window is wide (common in LLM answers)."""

    def generate(self, messages):
        return "Like this:\n\n```python\n" + "result = compute(" + ", ".join(f"arg_{i}" for i in range(60)) + ")\n```\n"


def test_a_long_code_line_keeps_both_answers_in_the_window(browser, make_app):
    """Neither a code line in the answers nor a link in the message wider than the window widens the
    page: both answers and their ratings stay in a 1280 px window."""
    app = make_app(LLM_BACKENDS={"concise": CodeAnswer(), "detailed": CodeAnswer()})
    for pg in _page(browser, app):
        pg.set_viewport_size({"width": 1280, "height": 720})
        to_first_task(pg, "CODE-WORKER")
        send(pg, "Show me the code of https://example.org/" + "a" * 300, 0)
        right = pg.evaluate("document.getElementById('response-1').getBoundingClientRect().right")
        assert right <= 1280 and pg.evaluate("document.documentElement.scrollWidth") <= 1280, right
        assert pg.evaluate("(p => p.scrollWidth > p.clientWidth)(document.querySelector('#response-0 pre'))")  # scrolls in its box


def test_a_rating_that_could_not_be_saved_says_so(browser, app):
    """While a rating is on its way (a slow connection) the page says it is being saved; the
    connection drops: the page says so and keeps the answers (a name clash made every failed save
    a JS error without a word, and a stale page never reloaded)."""
    for pg in _page(browser, app):
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        to_first_task(pg, "DROP-WORKER")
        send(pg, "How does sleep help memory?", 0)
        held = []
        pg.route("**/rating", lambda route: held.append(route))  # on its way ...
        pg.check("[name='likert-0'][value='4']")
        pg.check("[name='likert-1'][value='2']")
        pg.check("[name='choice'][value='1']")
        assert pg.is_hidden("#rating-saving")
        pg.click("#submit-rating")
        pg.wait_for_selector("#rating-saving:not([hidden])")
        assert pg.text_content("#rating-saving") == "Saving your rating…" and pg.is_disabled("#submit-rating")
        while not held:
            pg.wait_for_timeout(20)
        held[0].abort()  # ... and the connection drops
        pg.wait_for_selector("#rating-error:not([hidden])")
        assert pg.is_hidden("#rating-saving")
        assert "connection dropped" in pg.text_content("#rating-error") and not errors, errors
        assert pg.is_checked("[name='choice'][value='1']") and pg.is_enabled("#submit-rating")
        pg.unroute("**/rating")
        rate(pg, [4, 2], choice=1)


def test_the_withdraw_link_is_reached_by_keyboard_and_cancel_goes_back(page, app):
    """On the chat task (the page with the most controls) Tab reaches "Withdraw from the study"
    after the page's own controls; Enter opens the confirmation, whose Cancel (by keyboard too)
    goes back to the task, nothing deleted. After withdrawing, the browser keeps nothing of the
    study either."""
    to_first_task(page, "KEYS")
    ready(page)
    page.focus("#message")
    order = []
    for _ in range(80):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if order[-1] == "withdraw-link":
            break
    assert order[-1] == "withdraw-link", order
    assert "send" in order  # the task's own controls come first
    page.keyboard.press("Enter")
    page.wait_for_url("**/withdraw")
    assert "answers and recordings will be deleted" in page.text_content("main")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "withdraw-cancel":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**/step")
    ready(page)
    assert page.locator("#message").count() == 1
    with app.extensions["gazepref"].sessions() as s:
        [p] = s.scalars(select(store.Participant)).all()
        assert p.consent and len(p.tasks) == 1
    # withdrawn: the final page removes what the browser kept of the study (a draft, an unsent batch)
    page.fill("#message", "a draft")
    page.evaluate("localStorage.setItem('gazepref:outbox:999', '{}'); localStorage.setItem('other', '1')")
    page.click("#withdraw-link")
    page.click("#withdraw-confirm")
    page.wait_for_url("**/withdrawn")
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('gazepref:'))") == []
    assert page.evaluate("localStorage.getItem('other')") == "1"


@pytest.mark.parametrize("reloaded_just_now", [False, True])
def test_a_task_page_whose_participant_withdrew_in_another_tab_records_no_more(browser, app, reloaded_just_now):
    """The participant withdraws in a second tab while the task page is open in the first (no
    camera: a mouse-only study): the first page's next batch is refused (401), it stops recording
    and is loaded again, which shows the withdrawn page. Before, it went on posting a refused batch
    every second until the participant did something that asked the server. A tab that was
    reloaded for this within the last minute is not reloaded again (no loop): it says the session
    has ended, and posts nothing more."""
    with BackgroundServer(app) as url:
        ctx = new_context(browser, viewport={"width": 1280, "height": 900}, base_url=url)
        pg = ctx.new_page()
        to_first_task(pg, f"WITHDRAWS-ELSEWHERE-{reloaded_just_now}")
        ready(pg)
        if reloaded_just_now:
            pg.evaluate("sessionStorage.setItem('gazepref:refused-reload', String(Date.now()))")
        refused = []
        pg.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
        other = ctx.new_page()
        other.goto("/withdraw")
        other.click("#withdraw-confirm")
        other.wait_for_url("**/withdrawn")
        for i in range(5):  # the participant moves the mouse on the task page: rows to send
            pg.mouse.move(200 + 40 * i, 300 + 10 * i)
            pg.wait_for_timeout(100)
        if reloaded_just_now:
            pg.wait_for_selector("#session-ended")
            assert "Your session has ended" in pg.text_content("#session-ended")
            assert pg.evaluate("window.gazepref.recorder.stopped") is True
            seen = len(refused)
            for i in range(20):  # 3 s more of mouse movement: nothing is posted
                pg.mouse.move(600 - 20 * i, 400)
                pg.wait_for_timeout(150)
            assert len(refused) == seen, refused
        else:
            pg.wait_for_url("**/withdrawn")
            assert pg.is_visible("#withdrawn")
        assert 1 <= len(refused) <= 2, refused
        ctx.close()


def test_a_double_click_on_the_link_leaves_no_dead_end(page):
    """The study link opened twice at once (a double click): each arrival makes its own form token
    and the later answer's cookie wins, so the page on screen may carry the other one's. Its "I
    agree" came back as a 400 "This page has expired"; Chromium says the form is the site's own
    page's (Sec-Fetch-Site/Mode), so it comes back to consent saying nothing was sent, and the
    next click counts. A stale step form keeps what was chosen."""
    link = "/?PROLIFIC_PID=DOUBLE-CLICK&STUDY_ID=S&SESSION_ID=X"
    page.goto(link)
    page.context.clear_cookies()  # the second arrival: no cookie yet, and its answer's comes last
    assert page.request.get(link).ok
    page.click("#agree")
    page.wait_for_selector("#expired-notice")
    assert page.url.endswith("/consent?expired=1")
    page.click("#agree")
    page.click("#skip")
    continue_with(page)
    page.check("[name='understand_before'][value='2']")
    page.evaluate("document.querySelector(\"form.step-form [name='csrf_token']\").value = 'stale'")
    page.click("#continue")
    page.wait_for_selector("#expired-notice")
    # kept by the tab: page.js (a module, loaded after the page shows) puts the choice back
    wait_for_function(page, "document.querySelector(\"[name='understand_before'][value='2']\").checked")
    page.click("#continue")
    ready(page)
    assert page.locator("#message").is_visible()
