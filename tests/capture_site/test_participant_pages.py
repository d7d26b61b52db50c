"""The participant's pages in headless Chromium: Back/Forward and stale tabs, the empty-message
hint, Markdown answers whose rendered words map back to the raw text, the expandable history, the
copy check, the hand-off to the crowd platform, the minimum window and the favicon."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site.hits import word_at
from sitetest import study_variant
from browsertest import stop_the_clock, wait_for_function
from test_browser import _page, browser, continue_with, rate, ready, send, wait_outbox_empty  # noqa: F401

pytestmark = pytest.mark.browser

# one pointwise task of one turn (the shortest way through the flow)
SHORT = {"pairwise": "0", "min_turns": "1", "demographics": "false"}

MARKDOWN_ANSWER = """### Sleep and memory

Sleep helps **memory** in `three` ways:

- During *deep* sleep the brain replays what you learned.
- The replay moves memories to the cortex.

| Stage | Hours per night |
|-------|----------------:|
| Deep sleep | **1.5** |
| REM sleep | 2 |

Most adults need 7 to 9 hours a night."""


class Fixed:
    """A backend that always gives the same answer."""

    def __init__(self, text: str):
        self.text = text

    def generate(self, messages):
        return self.text


def agree(pg) -> None:
    """'I agree' on the consent page, then the next page's button. Two CI runs of this module
    (of ~12) waited 30 s here for the page after the consent page, never reproduced: the wait is
    60 s, and a page that does not come says where the page stood (its address and text)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pg.click("#agree")
    try:
        pg.wait_for_selector("#continue, #skip", timeout=60_000)
    except PlaywrightTimeout:
        raise AssertionError(f"after 'I agree' the page stayed at {pg.url}: {pg.inner_text('body')[:400]!r}") from None


def start(pg, pid: str, pre: bool = True):
    pg.goto(f"/?PROLIFIC_PID={pid}&STUDY_ID=S&SESSION_ID=X")
    agree(pg)
    if pg.locator("#skip").count():
        pg.click("#skip")
    continue_with(pg)  # instructions
    if pre:
        continue_with(pg, {"understand_before": "2"})


def test_back_after_rating_then_send_and_a_stale_tab_reloads(browser, app):
    for pg in _page(browser, app):
        start(pg, "BACK-WORKER")
        send(pg, "How does sleep help memory?", 0)
        rate(pg, [4, 2], choice=0)
        pg.go_back()  # the previous entry is the pre-task page's /step: never a cached task page
        ready(pg)
        assert pg.text_content("#rated-count") == "1"
        assert pg.locator("#history .history-turn").count() == 1
        send(pg, "How many hours of sleep does an adult need?", 1)  # no "already sent" error
        assert pg.is_hidden("#send-error")
        rate(pg, [3, 5], choice=1)

        # a second tab goes on; the first one, now out of date, is told so and reloads
        other = pg.context.new_page()
        other.goto("/step")
        send(other, "Any tips to sleep better?", 2)
        pg.fill("#message", "A message from the old tab")
        pg.click("#send")
        pg.wait_for_selector("#send-error:not([hidden])")
        assert "out of date" in pg.text_content("#send-error")
        wait_for_function(pg, "window.gazepref && window.gazepref.state().current "
                             "&& window.gazepref.state().current.index === 2")
        assert pg.text_content("#current-prompt") == "Any tips to sleep better?"

        # an empty message says so instead of doing nothing
        other.close()
        rate(pg, [5, 4], choice=0)
        pg.fill("#message", "   ")
        pg.click("#send")
        assert pg.text_content("#send-error") == "Please write a message first."
    with app.extensions["gazepref"].sessions() as s:
        turns = s.scalars(select(store.Turn).order_by(store.Turn.index)).all()
        assert [t.prompt for t in turns] == ["How does sleep help memory?",
                                             "How many hours of sleep does an adult need?",
                                             "Any tips to sleep better?"]


def test_markdown_answer_words_map_back_to_the_raw_text(browser, make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", **SHORT)),
                   LLM_BACKENDS={"detailed": Fixed(MARKDOWN_ANSWER)})
    for pg in _page(browser, app):
        start(pg, "MD-WORKER")
        send(pg, "How does sleep help memory?", 0)
        pane = "#response-0"
        for sel in ("h5", "ul li", "strong", "code", "table td"):
            assert pg.locator(f"{pane} {sel}").count() >= 1, sel
        assert "**" not in pg.text_content(pane) and "|" not in pg.text_content(pane)
        shown = pg.eval_on_selector_all(f"{pane} span.w",
                                        "els => els.map(e => [e.textContent, +e.dataset.s, +e.dataset.e])")
        cell = pg.locator(f"{pane} td span.w", has_text="1.5")
        box = cell.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        pg.mouse.move(cx - 30, cy + 20, steps=3)
        pg.mouse.move(cx, cy, steps=5)
        pg.wait_for_timeout(150)
        wait_outbox_empty(pg)
        with app.extensions["gazepref"].sessions() as s:
            task = s.scalars(select(store.Task)).one()
            raw = task.turns[0].responses[0].text
            layout = store.read_stream(s, task, "layout").to_pandas()
            scroll = store.read_stream(s, task, "scroll").to_pandas()
            mouse = store.read_stream(s, task, "mouse").to_pandas()
    assert raw == MARKDOWN_ANSWER
    words = layout[(layout["kind"] == "word") & (layout["target"] == "response:0")]
    last = words[words["t"] == words["t"].max()]
    # every rendered word in the layout stream: its box, and raw[char_start:char_end] is the word shown
    assert sorted(zip(last["char_start"], last["char_end"])) == sorted((s, e) for _, s, e in shown)
    assert all(raw[s:e] == text for text, s, e in shown)
    assert {"Sleep", "memory", "three", "During", "deep", "Stage", "1.5", "REM", "9"} <= {t for t, _, _ in shown}
    assert (last["w"] > 0).all() and (last["h"] > 0).all()
    # ... so the mouse sample over the table cell hits "1.5" in the raw text
    d2 = (mouse["x"] - cx) ** 2 + (mouse["y"] - cy) ** 2
    sample = mouse.loc[d2.idxmin()]
    hit = word_at(layout, scroll, sample["t"], sample["x"], sample["y"])
    assert hit is not None and raw[hit.char_start:hit.char_end] == "1.5"


def test_an_answer_longer_than_its_box_says_it_goes_on_until_its_end_is_read(browser, make_app, tmp_path):
    """An answer taller than its box scrolls in it, and the box's scroll bar is hidden on many
    systems (macOS, phones, this headless Chromium): the line under the box says the answer goes
    on until its end is scrolled into view (then its place stays empty, nothing moves); beside a
    short answer, which fits, there is no such line. So does the post-task page's box of the
    task's answers, from which a sentence is copied."""
    long = "\n\n".join(f"Paragraph {i}: sleep helps memory in many ways, as studies show." for i in range(30))
    toml = study_variant(tmp_path / "s.toml", min_turns="1", demographics="false")  # the pairwise task first
    app = make_app(STUDY_CONFIG=str(toml), LLM_BACKENDS={"detailed": Fixed(long), "concise": Fixed("Eight hours.")})
    for pg in _page(browser, app):
        start(pg, "LONG-WORKER")
        send(pg, "How does sleep help memory?", 0)
        pos = 0 if "Paragraph 29" in pg.text_content("#response-0") else 1
        more, other = f"#response-{pos}-more", f"#response-{1 - pos}-more"
        assert pg.is_visible(more) and "Scroll this answer to read the rest" in pg.text_content(more)
        assert pg.is_hidden(other)
        below = pg.locator("#rating").bounding_box()["y"]
        pg.eval_on_selector(f"#response-{pos}", "el => { el.scrollTop = el.scrollHeight / 2; }")
        pg.wait_for_timeout(100)
        assert pg.is_visible(more)  # halfway: still more below
        pg.eval_on_selector(f"#response-{pos}", "el => { el.scrollTop = el.scrollHeight; }")
        wait_for_function(pg, f"getComputedStyle(document.querySelector('{more}')).visibility === 'hidden'")
        assert pg.locator("#rating").bounding_box()["y"] == below  # the rating form did not move
        rate(pg, [4, 3], choice=0)
        assert pg.is_hidden(more) and pg.is_hidden(other)  # no turn on screen: no line
        pg.click("#finish")  # the post-task page's box of the task's answers (to copy from) says so too
        pg.wait_for_selector("#transcript-more:not([hidden])")
        assert "Scroll this box to see all the answers" in pg.text_content("#transcript-more")
        pg.eval_on_selector(".transcript", "el => { el.scrollTop = el.scrollHeight; }")
        wait_for_function(pg, "getComputedStyle(document.querySelector('#transcript-more')).visibility === 'hidden'")


def test_a_task_page_drawn_by_the_previous_release_works_with_this_chat_script(browser, make_app, tmp_path):
    """A site upgraded in place serves the new static files at once while a running worker may
    still draw its cached template of the previous release (no Finish hint, no "Scroll this
    answer" lines): the chat works there too (chat.js stopped at the missing line, Send stayed
    greyed out and nobody could chat)."""
    import re

    def previous_release(route):
        html = route.fetch().text()
        html = re.sub(r'<span id="finish-hint".*?</span>', "", html, flags=re.S)
        html = re.sub(r'<p class="more-below".*?</p>', "", html, flags=re.S)
        route.fulfill(status=200, headers={"content-type": "text/html; charset=utf-8"}, body=html)

    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", **SHORT)))
    for pg in _page(browser, app):
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        start(pg, "OLD-PAGE-WORKER", pre=False)
        pg.route("**/step", previous_release)
        continue_with(pg, {"understand_before": "2"})
        pg.wait_for_selector("#message")  # the task page, not the questions page still shown
        assert pg.locator("#finish-hint").count() == 0 and pg.locator(".more-below").count() == 0
        send(pg, "How does sleep help memory?", 0)
        rate(pg, [4])
        assert pg.is_enabled("#finish") and errors == []


def test_copy_check_and_the_completion_redirect(browser, make_app, tmp_path):
    extra = '[platform]\nname = "prolific"\nredirect_after_s = 2'
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", extra, **SHORT)),
                   LLM_BACKENDS={"detailed": Fixed(MARKDOWN_ANSWER)})
    for pg in _page(browser, app):
        start(pg, "DONE-WORKER")
        send(pg, "How does sleep help memory?", 0)
        rate(pg, [4])
        # the earlier answer is collapsed to a few lines, and expands
        answer = pg.locator("#history .assistant-message")
        assert "collapsed" in answer.get_attribute("class")
        pg.click("#history button.expand")
        assert "collapsed" not in answer.get_attribute("class")
        assert pg.get_attribute("#history button.expand", "aria-expanded") == "true"
        wait_outbox_empty(pg)
        pg.click("#finish")
        # the post-task page shows the answers to copy from, and refuses text that is not in them
        # (waited for: on a loaded machine the task page may still be the one shown)
        pg.wait_for_selector(".transcript")
        assert pg.locator(".transcript strong", has_text="memory").count() == 1
        continue_with(pg, {"summary": "Sleep consolidates memory.", "understand_after": "4",
                           "copy_sentence": "Sleep is for the weak.", "attention": "2"})
        assert "not in the answers" in pg.text_content(".errors")
        # read first: page.js moves the focus there once it runs, which a loaded machine may not
        # have done yet when the error text is in the page
        assert wait_for_function(pg, "document.activeElement.classList.contains('errors')")
        # what was typed since, and before, survives a reload, which asks for the step (no
        # form sent again); then a second wrong copy: a page drawn from a form, which Back reaches below
        pg.fill("[name='feedback']", "Typed after the error, then the page was reloaded.")
        pg.reload()
        assert not pg.locator(".errors").count()
        assert pg.input_value("[name='feedback']") == "Typed after the error, then the page was reloaded."
        assert pg.input_value("[name='summary']") == "Sleep consolidates memory."
        assert pg.is_checked("[name='understand_after'][value='4']") and pg.is_checked("[name='attention'][value='2']")
        pg.click("#continue")
        assert "not in the answers" in pg.text_content(".errors")
        sentence = pg.locator(".transcript p", has_text="Most adults").first.text_content()
        seen = []
        pg.route("https://app.prolific.com/**", lambda route: (seen.append(route.request.url),
                                                                route.fulfill(body="back on Prolific")))
        stop_the_clock(pg)  # the done page's timer runs when the test moves its clock on
        continue_with(pg, {"summary": "Sleep consolidates memory.", "understand_after": "4",
                           "copy_sentence": sentence, "attention": "2"})
        assert pg.text_content("#completion-code").strip() == "TEST-CODE-42"
        assert pg.get_attribute("#handoff", "href") == "https://app.prolific.com/submissions/complete?cc=TEST-CODE-42"
        # the page's script set its timer (modules run before "load"; the code above can be read
        # earlier, and a clock moved on before the timer exists leaves it waiting: a failure under load)
        pg.wait_for_load_state("load")
        pg.clock.run_for(2000)
        pg.wait_for_url("https://app.prolific.com/**")  # redirect_after_s: without a click
        assert seen == ["https://app.prolific.com/submissions/complete?cc=TEST-CODE-42"]
        pg.go_back()  # the done page again: this time the participant stays (a time limit they can stop)
        pg.wait_for_load_state("load")  # (its script set the timer and the stay button's handler)
        # the timer would click the link within run_for: counted on the page itself (the click kept
        # from navigating, so the count can be read), not by a navigation a loaded machine may not
        # have got under way yet
        pg.evaluate("""() => { window.handoffClicks = 0; document.getElementById("handoff").addEventListener(
            "click", (e) => { window.handoffClicks += 1; e.preventDefault(); }); }""")
        pg.click("#handoff-stay")
        pg.clock.run_for(2500)
        assert pg.evaluate("window.handoffClicks") == 0
        assert "app.prolific.com" not in pg.url and len(seen) == 1
        assert "You stay on this page" in pg.text_content("#handoff-auto")
        pg.go_back()  # the page sent back with the error: the current step, not "Confirm Form Resubmission"
        assert pg.text_content("#completion-code").strip() == "TEST-CODE-42"
        assert not pg.evaluate("Object.keys(sessionStorage).some(k => k.startsWith('gazepref:form:'))")
    with app.extensions["gazepref"].sessions() as s:
        task = s.scalars(select(store.Task)).one()
        assert task.answers["copy_sentence"] == sentence
        assert task.answers["feedback"] == "Typed after the error, then the page was reloaded."


@pytest.mark.parametrize("host, lands", [
    ("https://workersandbox.mturk.com", "https://workersandbox.mturk.com/**"),
    # production's externalSubmit sends the worker on to the worker site: a redirect that
    # form-action governs too (a host missing there leaves the worker on the done page)
    ("https://www.mturk.com", "https://worker.mturk.com/**"),
])
def test_an_mturk_worker_submits_the_hit_from_the_done_page(browser, make_app, tmp_path, host, lands):
    """The done page's form posts to MTurk's externalSubmit: the site's Content-Security-Policy
    (form-action) lets the form go to MTurk's hosts, and nowhere else (security.CSP_DIRECTIVES)."""
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", '[platform]\nname = "mturk"', **SHORT)),
                   LLM_BACKENDS={"detailed": Fixed(MARKDOWN_ANSWER)})
    for pg in _page(browser, app):
        pg.goto("/?workerId=CSP-WORKER&assignmentId=CSP-ASSIGNMENT&hitId=CSP-HIT"
                f"&turkSubmitTo={quote(host, safe='')}")
        agree(pg)
        continue_with(pg)  # instructions
        continue_with(pg, {"understand_before": "2"})
        send(pg, "How does sleep help memory?", 0)
        rate(pg, [4])
        wait_outbox_empty(pg)
        pg.click("#finish")
        sentence = pg.locator(".transcript p", has_text="Most adults").first.text_content()
        continue_with(pg, {"summary": "Sleep consolidates memory.", "understand_after": "4",
                           "copy_sentence": sentence, "attention": "2"})
        posted = []

        def mturk(route):
            posted.append((route.request.method, route.request.url, route.request.post_data))
            if route.request.url.startswith("https://www.mturk.com/"):
                route.fulfill(status=302, headers={"Location": "https://worker.mturk.com/tasks?submitted=1"})
            else:
                route.fulfill(body="HIT submitted")

        pg.route("https://*.mturk.com/**", mturk)
        pg.click("#handoff")
        pg.wait_for_url(lands)
    assert posted[0] == ("POST", f"{host}/mturk/externalSubmit",
                         "assignmentId=CSP-ASSIGNMENT&completion_code=TEST-CODE-42")


def test_small_window_gets_the_larger_window_page(browser, make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", min_viewport="[1024, 600]")))
    for pg in _page(browser, app):
        pg.set_viewport_size({"width": 390, "height": 844})  # a phone
        pg.goto("/?PROLIFIC_PID=PHONE-WORKER")
        pg.wait_for_selector("#viewport-gate:not([hidden])")
        assert pg.is_hidden("#agree") and "1024 × 600" in pg.text_content("#viewport-gate")
        assert pg.text_content("#viewport-size") == "390 × 844"
        # no larger window on a phone: the way back to the platform, as without a camera
        assert pg.is_visible("#viewport-way-out")
        assert "return the study on Prolific" in pg.text_content("#viewport-way-out")
        pg.set_viewport_size({"width": 1280, "height": 800})  # a larger window: the study goes on
        pg.wait_for_selector("#agree", state="visible")
        assert pg.is_hidden("#viewport-gate")
        icon = pg.request.get(pg.get_attribute("link[rel=icon]", "href"))
        assert icon.ok and "svg" in icon.headers["content-type"]
        assert "svg" in pg.request.get("/favicon.ico").headers["content-type"]  # no 404 for browsers that ask


def test_on_a_phone_each_rating_scale_reads_on_one_line(browser, app):
    """A mouse-only study admits phones (no minimum window): at 390 px the two answers' rating
    scales of a pairwise turn go one under the other, each "not at all 1 2 3 4 5 very" on one
    line (side by side, each wrapped over three lines with 1 and 5 apart from the rest); so at
    200 % zoom on a laptop (683 CSS px)."""
    for pg in _page(browser, app):
        pg.set_viewport_size({"width": 390, "height": 844})
        start(pg, "PHONE-RATER")
        send(pg, "How does sleep help memory?", 0)
        # 390 px: a phone; 683 px: a 1366 px laptop screen at 200 % zoom (the scales were side by
        # side there, each wrapped with "5 very" on a line of its own)
        for width, height in ((390, 844), (683, 384)):
            pg.set_viewport_size({"width": width, "height": height})
            for pos in (0, 1):
                tops = [pg.locator(f"[name='likert-{pos}'][value='{v}']").bounding_box()["y"] for v in range(1, 6)]
                ends = [pg.locator(f"#likert-{pos}-{end}").bounding_box()["y"] for end in ("low", "high")]
                assert max(tops + ends) - min(tops + ends) < 8, (width, pos, tops, ends)
            assert pg.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the window
            # "By how much?" is not read as part of "Answer B (right)": on a line of its own
            b = pg.locator("[name='choice'][value='1']").locator("xpath=..").bounding_box()
            strength = pg.locator("label.strength").bounding_box()
            assert strength["y"] >= b["y"] + b["height"] - 1, (width, b, strength)
        rate(pg, [4, 2], choice=0)
