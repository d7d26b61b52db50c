"""The browser tests' own helpers (browsertest.py): ``wait_for_function`` waits out an expression
that reads what the page does not have yet (the previous page still shown), and says so when it
times out."""
from __future__ import annotations

import pytest

from browsertest import launch, new_context, shared_playwright, wait_for_function

pytestmark = pytest.mark.browser


def test_wait_for_function_waits_for_an_element_still_missing():
    browser = launch(shared_playwright())
    try:
        page = new_context(browser).new_page()
        page.set_content("<p>the previous page</p>")
        page.evaluate("""() => setTimeout(() => { const p = document.createElement("p"); p.id = "late";
            p.textContent = "here"; document.body.append(p); }, 300)""")
        # reading .textContent of null throws until the element is there: not yet true
        assert wait_for_function(page, "document.querySelector('#late').textContent", timeout=10_000) == "here"
        with pytest.raises(TimeoutError, match="Cannot read properties of null"):
            wait_for_function(page, "document.querySelector('#never').textContent", timeout=500)
        with pytest.raises(Exception, match="ReferenceError"):  # a broken expression still fails at once
            wait_for_function(page, "undefinedName.value", timeout=10_000)
    finally:
        browser.close()
