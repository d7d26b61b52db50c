"""The participant pages as a screen reader reads them (WCAG 2.1 AA): every page has its own title
and a language, every form control has a name, radio buttons sit in a named group, the focusable
answer panes are named regions and the chat's progress messages are announced."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from sitetest import Walker, csp_breaches, csrf_of, first_sentence

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def all_text(self) -> str:
        return " ".join(" ".join(n.text.split()) for n in self.walk()).strip()

    def hidden(self) -> bool:
        return "hidden" in self.attrs or any("hidden" in a.attrs for a in self.ancestors())


class Tree(HTMLParser):
    """The page as a tree of :class:`Node` (html.parser; the templates close their elements)."""

    def __init__(self, html: str):
        super().__init__()
        self.root = self.node = Node("#root", {}, None)
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_endtag(self, tag):
        node = self.node
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.text += data

    def find(self, pred) -> list[Node]:
        return [n for n in self.root.walk() if pred(n)]

    def by_id(self, id_: str) -> Node | None:
        found = self.find(lambda n: n.attrs.get("id") == id_)
        return found[0] if found else None

    def title(self) -> str:
        [t] = self.find(lambda n: n.tag == "title")
        return t.all_text()


def accessible_name(tree: Tree, el: Node) -> str:
    """The name a screen reader gives ``el`` (aria-labelledby, aria-label, a <label>, a button's text)."""
    if el.attrs.get("aria-labelledby"):
        return " ".join(tree.by_id(i).all_text() for i in el.attrs["aria-labelledby"].split() if tree.by_id(i))
    if el.attrs.get("aria-label"):
        return el.attrs["aria-label"]
    labels = [a for a in el.ancestors() if a.tag == "label"]
    if el.attrs.get("id"):
        labels += tree.find(lambda n: n.tag == "label" and n.attrs.get("for") == el.attrs["id"])
    if labels:
        return labels[0].all_text()
    return el.all_text() if el.tag == "button" else ""


def check_page(html: str) -> list[str]:
    """What a screen-reader user misses on the page (empty: nothing)."""
    tree = Tree(html)
    problems = []
    [doc] = tree.find(lambda n: n.tag == "html")
    if not doc.attrs.get("lang"):
        problems.append("no lang on <html>")
    if tree.title() in ("", "Study"):
        problems.append(f"no title of its own: {tree.title()!r}")
    controls = tree.find(lambda n: (n.tag in ("select", "textarea", "button")
                                    or (n.tag == "input" and n.attrs.get("type") != "hidden")))
    for el in controls:
        if not accessible_name(tree, el):
            problems.append(f"{el.tag} {el.attrs} has no name")
        if el.attrs.get("type") == "radio":
            groups = [a for a in el.ancestors() if a.tag == "fieldset" or a.attrs.get("role") == "radiogroup"]
            legend = groups and (any(c.tag == "legend" and c.all_text() for c in groups[0].children)
                                 or groups[0].attrs.get("aria-label") or groups[0].attrs.get("aria-labelledby"))
            if not legend:
                problems.append(f"radio {el.attrs.get('name')} is in no named group")
    for el in tree.find(lambda n: "tabindex" in n.attrs and n.attrs["tabindex"] != "-1"
                        and n.tag not in ("a", "button", "input", "select", "textarea")):
        if not el.attrs.get("role") or not accessible_name(tree, el):
            problems.append(f"focusable <{el.tag} id={el.attrs.get('id')}> has no role or no name")
    return problems


def walk_pages(walker: Walker) -> dict[str, str]:
    """Every page of a whole session of the test study (one pairwise and one pointwise task), by step."""
    pages = {}
    walker.arrive()
    pages["consent"] = walker.client.get("/consent").text
    walker.consent()
    post = {"summary": "s", "understand_after": "4", "attention": "2"}
    while True:
        step = walker.current_step()
        html = walker.step().text
        pages.setdefault(step.split(":")[0], html)
        if step == "done":
            return pages
        if step.startswith("demographics"):  # the page shown again with an error message too
            pages["demographics-error"] = walker.answer({"age": "many"}, follow=False).text
        if step.startswith("task:"):
            data = walker.to_task()
            for i, prompt in enumerate(["How does sleep help memory?", "How many hours do adults need?"]):
                turn = walker.chat_turn(data, i, prompt)
            walker.answer()
            continue
        if step.startswith("post"):
            pages.setdefault("post-error", walker.answer({"summary": "s"}, follow=False).text)
            walker.answer({**post, "copy_sentence": first_sentence(turn)})
            continue
        walker.answer({"understand_before": "3", "age": "30"})


@pytest.fixture(scope="module")
def session_pages(tmp_path_factory):
    from gazepref.capture_site.app import create_app
    from sitetest import STUDY_TOML

    app = create_app(str(tmp_path_factory.mktemp("a11y") / "instance"),
                     {"TESTING": True, "SECRET_KEY": "test-secret", "STUDY_CONFIG": str(STUDY_TOML)})
    try:
        pages = walk_pages(Walker(app.test_client(), "A11Y-WORKER"))
        declined = Walker(app.test_client(), "A11Y-DECLINER")
        declined.arrive()
        pages["declined"] = declined.consent("decline").text
        leaver = Walker(app.test_client(), "A11Y-WITHDRAWS")
        leaver.arrive()
        leaver.consent()
        pages["withdraw"] = leaver.client.get("/withdraw").text
        leaver.client.post("/withdraw", data={"csrf_token": csrf_of(pages["withdraw"])})
        pages["withdrawn"] = leaver.client.get("/withdrawn").text
    finally:
        app.extensions["gazepref"].dispose()
    return pages


def test_the_walk_meets_every_kind_of_participant_page(session_pages):
    assert {"consent", "demographics", "demographics-error", "instructions", "pre", "task", "post",
            "post-error", "done", "declined", "withdraw", "withdrawn"} <= set(session_pages)


@pytest.mark.parametrize("page", ["consent", "demographics", "demographics-error", "instructions", "pre", "task",
                                  "post", "post-error", "done", "declined", "withdraw", "withdrawn"])
def test_a_screen_reader_finds_title_language_and_named_controls(session_pages, page):
    assert check_page(session_pages[page]) == []


def test_every_page_after_consent_and_only_those_offer_withdrawal(session_pages):
    """The footer's "Withdraw from the study" link: on each step and the done page, not on the
    consent, declined or withdrawal pages."""
    link = 'id="withdraw-link" href="/withdraw"'
    offered = {name for name, html in session_pages.items() if link in html}
    assert offered == set(session_pages) - {"consent", "declined", "withdraw", "withdrawn"}, offered
    assert {"done", "task", "demographics-error"} <= offered


def test_no_page_needs_what_the_content_security_policy_refuses(session_pages):
    """No inline script, event handler, style attribute or javascript: URL (security.CSP_DIRECTIVES)."""
    assert {name: found for name, html in session_pages.items() if (found := csp_breaches(html))} == {}


def test_titles_tell_the_pages_apart(session_pages):
    titles = {page: Tree(html).title() for page, html in session_pages.items()}
    same = {k for k in titles if k.endswith("-error")}
    assert len({titles[k] for k in titles if k not in same}) == len(titles) - len(same), titles
    assert titles["pre"] == "Before the task: Sleep and memory – Test study"


def test_the_answer_panes_are_named_by_their_headings(session_pages):
    tree = Tree(session_pages["task"])
    for pos, heading in ((0, "Answer A"), (1, "Answer B")):
        pane = tree.by_id(f"response-{pos}")
        assert pane.attrs.get("role") == "region" and accessible_name(tree, pane) == heading


def test_the_chat_announces_that_the_assistant_is_answering(session_pages):
    tree = Tree(session_pages["task"])
    assert tree.by_id("waiting").attrs.get("role") == "status"


@pytest.mark.parametrize("page", ["pre", "task", "post"])
def test_the_ends_of_a_scale_are_read_with_its_first_and_last_value(session_pages, page):
    """A 1-5 scale's end words ("not at all", "very") are described with 1 and 5, not left as loose text."""
    tree = Tree(session_pages[page])
    scales = tree.find(lambda n: n.tag == "fieldset" and "scale" in n.attrs.get("class", "").split())
    assert scales
    for scale in scales:
        ends = [n.all_text() for n in scale.walk() if "scale-end" in n.attrs.get("class", "")]
        radios = [n for n in scale.walk() if n.attrs.get("type") == "radio"]
        described = {r.attrs["value"]: " ".join(tree.by_id(i).all_text() for i in r.attrs["aria-describedby"].split())
                     for r in radios if r.attrs.get("aria-describedby")}
        assert described == {"1": ends[0], "5": ends[-1]}, (scale.attrs, described)


def test_the_check_finds_what_is_missing():
    """The page check itself: an unlabelled field, a radio outside a group and an unnamed focusable div."""
    html = ('<html><head><title>Study</title></head><body><input name="a"><label>B <input name="b"></label>'
            '<input type="radio" name="r" value="1"><div tabindex="0" id="pane"></div></body></html>')
    assert check_page(html) == ["no lang on <html>", "no title of its own: 'Study'",
                                "input {'name': 'a'} has no name",
                                "input {'type': 'radio', 'name': 'r', 'value': '1'} has no name",
                                "radio r is in no named group",
                                "focusable <div id=pane> has no role or no name"]


@pytest.mark.parametrize("page", ["demographics-error", "post-error"])
def test_each_error_is_tied_to_its_question(session_pages, page):
    """A screen reader on the field in error hears what is wrong with it: each message has an id
    that the question's control (a radio scale: its group) refers to, and a text field or
    select is marked invalid."""
    tree = Tree(session_pages[page])
    [box] = tree.find(lambda n: "errors" in n.attrs.get("class", "").split())
    items = [n for n in box.walk() if n.tag == "li"]
    assert items and all(li.attrs.get("id", "").startswith("error-") for li in items)
    for li in items:
        name = li.attrs["id"].removeprefix("error-")
        controls = tree.find(lambda n, name=name: n.attrs.get("name") == name
                             and n.tag in ("input", "select", "textarea"))
        assert controls, name
        if controls[0].attrs.get("type") == "radio":
            [holder] = [a for a in controls[0].ancestors() if a.tag == "fieldset"][:1]
        else:
            holder = controls[0]
            assert holder.attrs.get("aria-invalid") == "true"
        assert li.attrs["id"] in holder.attrs.get("aria-describedby", "").split()
    valid = tree.find(lambda n: n.tag in ("select", "textarea") or n.attrs.get("type") == "number")
    described = {li.attrs["id"].removeprefix("error-") for li in items}
    assert all(n.attrs.get("name") in described for n in valid if "aria-invalid" in n.attrs)
