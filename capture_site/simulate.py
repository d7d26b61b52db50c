"""A synthetic study with a known answer: simulated participants go through the site's own flow.

``gazepref study simulate --participants N --effect D [--seed S] (--study SLUG | --out DIR)``

Each simulated participant is a browser driving a real app (:func:`~.app.create_app`, Flask test
client): arrival link, consent, the steps, then per pairwise task the chat page's calls — send a
message (``POST /api/tasks/<id>/turns``, the offline demo LLM answers), telemetry batches of one
second of page time each (``POST /api/ingest``, the batch format of ``static/telemetry.js``: mouse,
events, scroll, layout with element and word boxes, visibility, and gaze rows), the ratings
(``POST .../rating`` with the page clock's ``origin``, ``t_shown``, ``t_decided``) and the task's
finish. Nothing is written to the database except through those routes.

**What is simulated.** The page geometry of the task page (two answer panes side by side, 16 px text
on 24 px lines, word boxes as ``layout.js`` measures them); per turn a reading scanpath over the
word boxes: visits to the two answers in turn (the first one at random), fixations of ~220 ms on
words in reading order with skips and regressions, saccades between them; gaze sampled at 30 Hz with
a per-participant calibration offset and per-sample noise (as a webcam tracker gives); a mouse that
sometimes follows the reading and always ends on the rating controls (coalesced moves at 60 Hz,
clicks, ``rate``/``choose``/``submit`` events). The features see the dwell only where real data
has it: gaze and mouse samples over the answers' word boxes in the layout stream.

**Gaze rows.** The site's webcam path sends camera frames that the server's tracker turns into
gaze rows; simulating faces and running the face mesh per frame would measure the tracker, not the
chain, and take minutes per participant. The simulator sends the tracker's *output* instead: gaze
rows (t, x, y, confidence, flags) in the telemetry batches, which ``/api/ingest`` stores as the same
``gaze`` stream chunks on the same task clock.

**Preference and effect size.** Every turn the participant prefers the left or the right answer
at random (½ each), independently of which model wrote which answer, of the answers' lengths and
of everything earlier. The two answers come from two demo models of the same ``detailed`` style
(corpus entries ranked 0 and 1 for the message, 510-701 characters), placed left/right at random,
so length carries no information about the choice. The intended gaze dwell on answer *k* is
``len_k · r_k`` where ``r_k`` (ms per character) is the participant's reading rate × a turn factor
× ``exp(±Δ/2)`` (+ for the preferred answer) with ``Δ ~ Normal(D·σ, σ²)``, σ = :data:`SIGMA`
(the dwell clipped to 1.5-60 s per answer, which the usual 5-15 s never reach).

So **D is Cohen's d_z of the within-turn difference in log reading rate (log ms of gaze dwell per
character) between the preferred and the other answer**: the mean of Δ over its standard deviation.
An observer that knew each turn's Δ exactly would pick the preferred answer with probability
Φ(D) (Φ(0.8) = 0.79, Φ(0.5) = 0.69, Φ(0.2) = 0.58, Φ(0) = 0.5); the recorded samples add sampling
and gaze noise on top, so the models can only approach it. With ``D = 0`` nothing in the data
tells the preferred answer apart.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import UserError

#: standard deviation of Δ, the within-turn difference in log reading rate (see the module doc)
SIGMA = 0.5
VIEWPORT = (1280, 800)
PANE_Y, PANE_W, PANE_MAX_H = 130.0, 490.0, 360.0
PANE_X = (140.0, 650.0)
LINE_PX, WORD_H, CHAR_PX, SPACE_PX, PARAGRAPH_PX = 24.0, 19.0, 8.0, 4.0, 12.8
GAZE_HZ, MOUSE_HZ = 30.0, 60.0
FLUSH_MS = 1000.0  # the page's batch interval (``telemetry.js``); ``--batch-ms`` sets the simulator's
#: the range of ``--batch-ms``: the largest keeps every stream of a batch well under
#: :data:`.batches.MAX_ROWS` (gaze 30 Hz and mouse 60 Hz: ~3 600 rows a minute)
BATCH_MS_RANGE = (100.0, 60_000.0)
TURNS, TASKS = 4, 2
#: median gaze dwell per character of an answer (skimming: ~10 s for a 600-character answer)
MS_PER_CHAR = 16.0


def study_toml(slug: str, tasks: int = TASKS, turns: int = TURNS) -> str:
    """The simulated study's configuration: pairwise tasks only, two demo models of one style."""
    return f'''# A synthetic study written by `gazepref study simulate` (gazepref.capture_site.simulate).
[study]
slug = "{slug}"
name = "Simulated study"
completion_code = "SIMULATED"
demographics = false
webcam = "off"

[consent]
text = "Simulated participants."

[instructions]
text = "Simulated participants read two answers and choose one."

[tasks]
pairwise = {tasks}
pointwise = 0
min_turns = {turns}
max_turns = {turns}

[ratings]
likert = true
choice_strength = false
compare_previous = false
free_text = "off"

[[topics]]
id = "sleep"
title = "Sleep and memory"
prompt = "Find out how sleep helps memory and how much sleep an adult needs."

[[topics]]
id = "volcano"
title = "Volcanoes"
prompt = "Find out why volcanoes erupt and how scientists predict eruptions."

[[topics]]
id = "bees"
title = "Honey bees"
prompt = "Find out how honey bees communicate and why they matter for farming."

[models.sim-first]
backend = "demo"
variant = "detailed"
rank = 0

[models.sim-second]
backend = "demo"
variant = "detailed"
rank = 1

[assignment]
pairs = [["sim-first", "sim-second"]]
swap_positions = true
'''


# --------------------------------------------------------------------------- page geometry


def word_boxes(text: str, width: float = PANE_W) -> list[dict[str, Any]]:
    """Word boxes of ``text`` as ``layout.js`` measures them (px relative to the pane's content):
    words are runs of non-space (code-point offsets), lines wrap at ``width``, a line break starts
    a new line (``white-space: pre-wrap``), a blank line a new paragraph."""
    boxes, x, y = [], 0.0, 0.0
    for m in re.finditer(r"\S+|\s+", text):
        tok = m.group()
        if tok[0].isspace():
            breaks = tok.count("\n")
            if breaks >= 2:
                x, y = 0.0, y + LINE_PX + PARAGRAPH_PX
            elif breaks == 1:
                x, y = 0.0, y + LINE_PX
            elif x > 0:
                x += SPACE_PX * len(tok)
            continue
        w = CHAR_PX * len(tok)
        if x > 0 and x + w > width:
            x, y = 0.0, y + LINE_PX
        boxes.append({"index": len(boxes), "char_start": m.start(), "char_end": m.end(),
                      "x": x, "y": y + (LINE_PX - WORD_H) / 2, "w": w, "h": WORD_H})
        x += w
    return boxes


@dataclass
class Pane:
    position: int
    text: str
    boxes: list[dict[str, Any]]
    x: float
    y: float
    w: float
    h: float

    @classmethod
    def of(cls, position: int, text: str) -> Pane:
        boxes = word_boxes(text)
        content = max((b["y"] + LINE_PX for b in boxes), default=LINE_PX)
        h = min(content, PANE_MAX_H)
        visible = [b for b in boxes if b["y"] + b["h"] <= h] or boxes[:1]
        return cls(position, text, visible, PANE_X[position], PANE_Y, PANE_W, h)

    def word_point(self, i: int) -> tuple[float, float]:
        b = self.boxes[i]
        return self.x + b["x"] + b["w"] * 0.45, self.y + b["y"] + b["h"] / 2


# --------------------------------------------------------------------------- the page's recorder


COLUMNS = {
    "mouse": ("t", "x", "y", "buttons"),
    "events": ("t", "type", "target", "x", "y", "detail"),
    "scroll": ("t", "target", "scroll_x", "scroll_y"),
    "layout": ("t", "target", "kind", "index", "char_start", "char_end", "x", "y", "w", "h", "turn"),
    "visibility": ("t", "state"),
    "gaze": ("t", "x", "y", "confidence", "flags"),
}


class Recorder:
    """Rows of one task page, cut into batches of ``flush_ms`` of page time (one second, as
    ``telemetry.js``: column-major streams, a ``seq`` per page load from the server's ``next_seq``,
    the page's ``origin``) and posted to ``/api/ingest``."""

    def __init__(self, client, task: int, token: str, url: str, origin: float, seq: int = 0,
                 flush_ms: float = FLUSH_MS):
        self.client, self.task, self.token, self.url, self.origin, self.seq = client, task, token, url, origin, seq
        self.flush_ms = flush_ms
        self.rows: dict[str, list[tuple]] = {s: [] for s in COLUMNS}
        self.sent_until = 0.0
        self.batches = 0

    def add(self, stream: str, *row) -> None:
        """One row in the columns of :data:`COLUMNS` (numbers rounded to 0.01 as the page does)."""
        self.rows[stream].append(tuple(round(float(v), 2) if type(v) is float or isinstance(v, np.floating)
                                       else int(v) if isinstance(v, np.integer) else v for v in row))

    def event(self, t: float, type_: str, target: str = "window", detail: str | None = None,
              x: float | None = None, y: float | None = None) -> None:
        self.add("events", t, type_, target, x, y, detail)

    def send_until(self, t_ms: float) -> None:
        """Post the batches the page sends until ``t_ms``: one per elapsed interval (``flush_ms``)
        with rows, then one for the rows before ``t_ms`` (a page flushes before it leaves or waits
        on a request)."""
        for rows in self.rows.values():
            rows.sort(key=lambda r: r[0])
        every = self.flush_ms
        intervals = sorted({math.floor(r[0] / every) for rows in self.rows.values() for r in rows if r[0] < t_ms})
        for k in intervals:
            self._post(min(t_ms, (k + 1) * every))

    def _post(self, edge: float) -> None:
        streams = {}
        for s, rows in self.rows.items():
            k = bisect.bisect_left(rows, (edge,), key=lambda r: (r[0],))
            if not k:
                continue
            take, self.rows[s] = rows[:k], rows[k:]
            streams[s] = dict(zip(COLUMNS[s], map(list, zip(*take))))
        if not streams:
            return
        body = {"task": self.task, "seq": self.seq, "origin": self.origin, "streams": streams}
        r = self.client.post(self.url, data=json.dumps(body), content_type="application/json",
                             headers={"X-Participant-Token": self.token})
        if r.status_code != 200:
            raise RuntimeError(f"ingest refused a simulated batch: {r.status_code} {r.get_data(as_text=True)}")
        self.seq += 1
        self.batches += 1


# --------------------------------------------------------------------------- behaviour


@dataclass
class Person:
    """One simulated participant's constants."""

    ms_per_char: float  # reading rate (gaze dwell per character of an answer)
    bias: tuple[float, float]  # the gaze tracker's calibration offset, px
    noise_px: float  # per-sample gaze noise
    follow_mouse: float  # chance the pointer follows the reading into a pane on a visit


class TurnPlan:
    """The intended behaviour of one turn: which side is preferred, the dwell on each answer."""

    def __init__(self, rng: np.random.Generator, person: Person, effect: float, lens: tuple[int, int]):
        self.choice = int(rng.random() < 0.5)
        self.delta = float(rng.normal(effect * SIGMA, SIGMA))  # log-rate difference, preferred - other
        rate = person.ms_per_char * math.exp(rng.normal(0.0, 0.25))
        sign = [1.0 if p == self.choice else -1.0 for p in (0, 1)]
        self.dwell_ms = [float(np.clip(lens[p] * rate * math.exp(sign[p] * self.delta / 2), 1500, 60000))
                         for p in (0, 1)]
        pref = int(rng.integers(3, 6))
        self.likert = [pref if p == self.choice else int(rng.integers(1, pref + 1)) for p in (0, 1)]


class PageSimulator:
    """One participant on one chat task page: produces the rows the page would record."""

    def __init__(self, rec: Recorder, rng: np.random.Generator, person: Person):
        self.rec, self.rng, self.person = rec, rng, person
        self.t = 0.0
        self.gaze_next = float(rng.uniform(0, 1000 / GAZE_HZ))
        self.mouse = (640.0, 700.0)
        self.mouse_until = 0.0  # when the pointer's current move ends (the next starts there)
        self.reading_pos = {0: 0, 1: 0}

    # gaze: fixations held for a while, sampled at the tracker's rate with its noise
    def fixate(self, x: float, y: float, ms: float) -> None:
        end = self.t + ms
        if self.gaze_next < end:
            step = 1000 / GAZE_HZ
            n = int((end - self.gaze_next) / (0.9 * step)) + 2
            ts = self.gaze_next + np.concatenate([[0.0], np.cumsum(step * self.rng.uniform(0.9, 1.1, n))])
            k = int(np.searchsorted(ts, end))
            ts, self.gaze_next = ts[:k], float(ts[k])
            noise = self.rng.normal(0, self.person.noise_px, (k, 2))
            conf = self.rng.uniform(0.7, 1.0, k)
            blink = self.rng.random(k) < 0.02  # no estimate during a blink
            bx, by = self.person.bias
            add = self.rec.rows["gaze"].append
            for t, (nx, ny), c, b in zip(ts.tolist(), noise.tolist(), conf.tolist(), blink.tolist()):
                if b:
                    add((round(t, 2), None, None, 0.0, 16))
                else:
                    add((round(t, 2), round(x + bx + nx, 2), round(y + by + ny, 2), round(c, 2), 0))
        self.t = end

    def move_mouse(self, x: float, y: float, ms: float | None = None) -> float:
        """A pointer move (minimum-jerk path), one sample per animation frame, from now on or, while
        an earlier move is still under way, from its end (one hand: moves follow each other; before,
        a move begun during another interleaved their samples, jumps of ~700 px every 2 ms); the
        gaze keeps its own timeline (the move overlaps the next fixations). Returns the ms from now
        until the pointer is there."""
        x0, y0 = self.mouse
        dist = math.hypot(x - x0, y - y0)
        if dist < 1:
            return max(0.0, self.mouse_until - self.t)
        ms = ms or float(np.clip(150 + 1.2 * dist, 150, 900))
        n = max(2, int(ms / (1000 / MOUSE_HZ)))
        start = max(self.t, self.mouse_until)
        for k in range(1, n + 1):
            s = k / n
            f = 10 * s**3 - 15 * s**4 + 6 * s**5
            self.rec.add("mouse", start + k * 1000 / MOUSE_HZ, x0 + f * (x - x0) + self.rng.normal(0, 0.5),
                         y0 + f * (y - y0) + self.rng.normal(0, 0.5), 0)
        self.mouse = (x, y)
        self.mouse_until = start + n * 1000 / MOUSE_HZ
        return self.mouse_until - self.t

    def click(self, target: str, detail: str, x: float, y: float) -> None:
        ms = self.move_mouse(x, y)
        self.fixate(x + self.rng.normal(0, 5), y + self.rng.normal(0, 5), max(ms, 200) + 100)  # eyes on the target
        self.rec.add("mouse", self.t, x, y, 1)
        self.rec.event(self.t, "click", target, detail, x, y)

    def look_around(self, x: float, y: float, ms: float, spread: float = 40.0) -> None:
        """Fixations scattered around a point for ``ms`` (reading a prompt, waiting, typing)."""
        end = self.t + ms
        while self.t < end:
            self.fixate(x + self.rng.normal(0, spread), y + self.rng.normal(0, spread / 3),
                        min(end - self.t, float(self.rng.gamma(4, 70))))

    def read(self, pane: Pane, ms: float) -> None:
        """One visit to ``pane``: fixations on its words in reading order for ``ms``."""
        rng, end = self.rng, self.t + ms
        i = self.reading_pos[pane.position]
        n = len(pane.boxes)
        if self.rng.random() < self.person.follow_mouse:
            wx, wy = pane.word_point(min(i, n - 1))
            self.move_mouse(wx + rng.normal(0, 30), wy + 28 + rng.normal(0, 8))
        while self.t < end:
            self.t += 30  # the saccade (a sample due during it is taken at the next fixation)
            x, y = pane.word_point(i)
            fx, fy = x + rng.normal(0, 3), y + rng.normal(0, 2)
            self.fixate(fx, fy, min(end - self.t, float(np.clip(rng.gamma(4, 55), 80, 800))))
            u = rng.random()
            if u < 0.1:
                i = max(0, i - int(rng.integers(1, 8)))  # a regression
            else:
                i += 2 if u > 0.8 else 1  # the next word, or a skip
            if i >= n:  # at the end: back to a random earlier line (re-reading)
                i = int(rng.integers(0, n))
            if self.mouse[0] >= pane.x and self.mouse[0] < pane.x + pane.w and rng.random() < 0.08:
                wx, wy = pane.word_point(i)
                self.move_mouse(wx + rng.normal(0, 30), wy + 28 + rng.normal(0, 8), 250)
        self.reading_pos[pane.position] = i


def _visits(rng: np.random.Generator, dwell_ms: list[float]) -> list[tuple[int, float]]:
    """The order of the visits to the two answers and their lengths (first side at random)."""
    per = []
    for p in (0, 1):
        k = 1 + int(rng.poisson(0.8))
        per.append([(p, float(d)) for d in dwell_ms[p] * rng.dirichlet(np.full(k, 2.0))])
    side = int(rng.random() < 0.5)
    out = []
    while per[0] or per[1]:
        if per[side]:
            out.append(per[side].pop(0))
        side = 1 - side
    return out


def _layout_rows(rec: Recorder, t: float, panes: list[Pane], turn: int | None, controls_y: float) -> None:
    W, H = VIEWPORT
    rec.add("layout", t, "window", "element", -1, -1, -1, 0.0, 0.0, float(W), float(H), turn)
    if panes:
        rec.add("layout", t, "prompt", "element", -1, -1, -1, PANE_X[0], 90.0, 1000.0, 28.0, turn)
        for p in panes:
            rec.add("layout", t, f"response:{p.position}", "element", -1, -1, -1, p.x, p.y, p.w, p.h, turn)
        rec.add("layout", t, "controls", "element", -1, -1, -1, PANE_X[0], controls_y, 1000.0, 150.0, turn)
        for p in panes:
            for b in p.boxes:
                rec.add("layout", t, f"response:{p.position}", "word", b["index"], b["char_start"], b["char_end"],
                        b["x"], b["y"], b["w"], b["h"], turn)
            rec.add("scroll", t, f"response:{p.position}", 0.0, 0.0)
    else:
        rec.add("layout", t, "composer", "element", -1, -1, -1, PANE_X[0], 600.0, 1000.0, 120.0, turn)


# --------------------------------------------------------------------------- the flow


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not m:
        raise RuntimeError("the step page has no CSRF token")
    return m.group(1)


def _page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    if not m:
        raise RuntimeError("the task page has no page-data")
    return json.loads(m.group(1))


def _prompts(rng: np.random.Generator, n: int) -> list[str]:
    """Messages that ask about ``n`` different entries of the demo corpus."""
    from ..llm.demo import load_corpus

    entries = load_corpus()["entries"]
    picks = rng.choice(len(entries), size=min(n, len(entries)), replace=False)
    out = []
    for i in picks:
        kw = [str(k) for k in rng.choice(entries[int(i)]["keywords"], size=2, replace=False)]
        out.append(f"Can you tell me about {kw[0]} and {kw[1]}?")
    return out


def simulate_task(client, rng: np.random.Generator, person: Person, data: dict, effect: float,
                  epoch_ms: float, batch_ms: float = FLUSH_MS) -> tuple[list[dict[str, Any]], int]:
    """Chat, read and choose through one pairwise task page; returns the turns' intended plans and
    the number of telemetry batches sent (one per ``batch_ms`` of page time)."""
    rec = Recorder(client, data["task"], data["token"], data["urls"]["ingest"], epoch_ms, data.get("next_seq", 0),
                   flush_ms=batch_ms)
    page = PageSimulator(rec, rng, person)
    headers = {"X-Participant-Token": data["token"]}
    page.t = float(rng.uniform(150, 400))
    rec.add("visibility", page.t, "visible")
    _layout_rows(rec, page.t + 16, [], None, 0)
    plans = []
    for index, prompt in enumerate(_prompts(rng, data["max_turns"])):
        # typing the message in the composer
        page.move_mouse(640 + rng.normal(0, 60), 650 + rng.normal(0, 10))
        page.look_around(640, 650, float(rng.uniform(1500, 3000)), spread=120)
        rec.event(page.t, "submit", "composer", f"turn={index}")
        rec.send_until(page.t)
        r = client.post(data["urls"]["turns"], json={"index": index, "prompt": prompt}, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"the chat API refused a simulated message: {r.status_code} {r.get_data(as_text=True)}")
        turn = r.get_json()["turn"]
        page.look_around(640, 400, float(rng.uniform(300, 1200)), spread=150)  # waiting for the answers
        panes = [Pane.of(p, resp["text"]) for p, resp in enumerate(turn["responses"])]
        t_shown = page.t
        rec.event(t_shown, "shown", "window", f"turn={index}")
        controls_y = PANE_Y + max(p.h for p in panes) + 24
        _layout_rows(rec, t_shown + 16, panes, index, controls_y)
        plan = TurnPlan(rng, person, effect, (len(panes[0].text), len(panes[1].text)))
        page.reading_pos = {0: 0, 1: 0}
        page.look_around(400, 104, float(rng.uniform(300, 700)), spread=60)  # the prompt above the answers
        for side, ms in _visits(rng, plan.dwell_ms):
            page.look_around(645, PANE_Y + 80, 120, spread=10)  # between the panes
            page.read(panes[side], ms)
        # deciding: the controls below the answers
        page.look_around(640, controls_y + 60, float(rng.uniform(600, 1500)), spread=150)
        for p in (0, 1):
            x, y = PANE_X[p] + 60 + 30 * plan.likert[p], controls_y + 30
            page.click("controls", f"likert-{p}", x, y)
            rec.event(page.t, "rate", f"response:{p}", str(plan.likert[p]))
            page.fixate(x, y, 250)
        x, y = PANE_X[plan.choice] + 120, controls_y + 80
        page.click("controls", "choice", x, y)
        rec.event(page.t, "choose", f"response:{plan.choice}", "left" if plan.choice == 0 else "right")
        page.fixate(x, y, float(rng.uniform(300, 700)))
        page.click("controls", "submit-rating", 640, controls_y + 125)
        rec.event(page.t, "submit", "controls", f"rating turn={index}")
        t_decided = page.t
        rec.send_until(page.t)
        body = {"likert": plan.likert, "choice": plan.choice, "origin": epoch_ms, "t_shown": round(t_shown, 2),
                "t_decided": round(t_decided, 2)}
        r = client.post(f"{data['urls']['turns']}/{index}/rating", json=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"the chat API refused simulated ratings: {r.status_code} {r.get_data(as_text=True)}")
        page.t += 16
        _layout_rows(rec, page.t, [], None, 0)  # the answers are hidden, the composer is back
        plans.append({"turn": index, "choice": plan.choice, "delta": plan.delta, "dwell_ms": plan.dwell_ms,
                      "lens": [len(p.text) for p in panes]})
    page.look_around(640, 700, 800)
    rec.event(page.t, "submit", "window", "finish")
    rec.send_until(page.t + 1)
    return plans, rec.batches


def simulate_participant(client, rng: np.random.Generator, number: int, effect: float, epoch_ms: float,
                         batch_ms: float = FLUSH_MS) -> dict:
    """One participant from the arrival link to the end of the flow."""
    person = Person(ms_per_char=float(MS_PER_CHAR * math.exp(rng.normal(0, 0.25))),
                    bias=(float(rng.normal(0, 12)), float(rng.normal(0, 12))),
                    noise_px=float(rng.uniform(12, 30)), follow_mouse=float(rng.uniform(0.2, 0.8)))
    r = client.get("/", query_string={"PROLIFIC_PID": f"SIM{number:05d}", "STUDY_ID": "SIMULATED",
                                      "SESSION_ID": f"S{number:05d}"}, follow_redirects=True)
    r = client.post("/consent", data={"csrf_token": _csrf(r.get_data(as_text=True)), "decision": "agree"},
                    follow_redirects=True)
    plans, tasks, batches = [], 0, 0
    for _ in range(100):  # the steps of the flow (a handful)
        html = client.get("/step").get_data(as_text=True)
        m = re.search(r'name="step" value="([^"]+)"', html)
        if m is None:
            break  # done
        step = m.group(1)
        if step.startswith("task:"):
            data = _page_data(html)
            task_plans, sent = simulate_task(client, rng, person, data, effect, epoch_ms + tasks * 600_000,
                                                 batch_ms)
            plans, batches, tasks = plans + task_plans, batches + sent, tasks + 1
        r = client.post("/step", data={"csrf_token": _csrf(html), "step": step})
        if r.status_code not in (302, 303):
            raise RuntimeError(f"step {step!r} was not accepted ({r.status_code})")
    else:
        raise RuntimeError("the simulated participant never reached the end of the flow")
    return {"tasks": tasks, "turns": plans, "batches": batches}


def realised_effect(turn_plans: list[dict[str, Any]]) -> float:
    """The simulated Δ's standardised mean (mean / SD): D as drawn, before any measurement."""
    d = np.array([p["delta"] for p in turn_plans])
    return float(d.mean() / d.std(ddof=1)) if len(d) > 1 and d.std() > 0 else float("nan")


# --------------------------------------------------------------------------- the command


def simulate(participants: int, effect: float, seed: int = 0, study: str | None = None,
             out: str | os.PathLike | None = None, db: str | None = None, instance: str | None = None,
             tasks: int = TASKS, turns: int = TURNS, progress: bool = False,
             batch_ms: float = FLUSH_MS) -> dict[str, Any]:
    """Run ``participants`` simulated participants through a fresh study; into the database as
    study ``study`` (located as every command locates it) or, with ``out``, into a temporary
    instance exported as Parquet to ``out``. Returns a summary (counts, timings, the drawn D).

    ``batch_ms``: the page time each telemetry batch covers (the page's one second by default). A
    larger one posts the same rows, on the same clock, in fewer and larger batches (the rows are
    the same: a run that differs only in it draws the same study); the batch count and the
    stored chunks' boundaries differ, and the simulation runs faster (most of its time is the
    site's per-request work)."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DatabaseError

    from .. import store
    from .app import create_app

    if (study is None) == (out is None):
        raise UserError("give either --study SLUG or --out DIR")
    if participants < 1:
        raise UserError("--participants must be at least 1")
    if not math.isfinite(effect) or effect < 0:
        raise UserError("--effect must be a number >= 0")
    lo, hi = BATCH_MS_RANGE
    if not (math.isfinite(batch_ms) and lo <= batch_ms <= hi):
        raise UserError(f"--batch-ms must be between {lo:g} and {hi:g} (got {batch_ms:g})")
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise UserError(f"{out} exists and is not empty")
    slug = study or "simulated"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", slug):
        raise UserError(f"study slug must be letters, digits, '-' or '_' (got {slug!r})")
    started = time.perf_counter()
    shm = Path("/dev/shm")  # the temporary database in memory where there is one (no fsync per batch)
    tmp_root = str(shm) if out is not None and shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="gazepref-sim-", dir=tmp_root) as tmp:
        url = f"sqlite:///{Path(tmp) / 'gazepref.sqlite'}" if out is not None else store.database_url(db, instance)
        if store.sqlite_path(url) is not None:  # a new instance folder, as the site makes it
            store.sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        engine = store.make_engine(url)
        try:
            try:
                sessions = store.init_db(engine)
            except DatabaseError as e:  # a server that is down, a file that is no database
                raise store.database_error(url, e) from None
            toml = study_toml(slug, tasks, turns)
            with sessions() as s, s.begin():
                if s.scalar(select(store.Study).where(store.Study.slug == slug)) is not None:
                    raise UserError(f"the database already has a study {slug!r}; simulate into a new slug")
                # the pseudonyms (and with them the answers' sides and the CV folds) follow the seed:
                # the same command gives the same study
                salt = hashlib.sha256(f"gazepref-simulate:{seed}".encode()).hexdigest()[:32]
                s.add(store.Study(slug=slug, name="Simulated study", config=tomllib.loads(toml), salt=salt))
        finally:
            engine.dispose()
        config = Path(tmp) / "study.toml"
        config.write_text(toml, encoding="utf-8")
        app = create_app(str(Path(tmp) / "instance"), {
            "DATABASE_URL": url, "STUDY_CONFIG": str(config), "SECRET_KEY": os.urandom(16).hex(),
            "INGEST_RATE_PER_S": 1e9, "INGEST_BURST": 10**9,  # simulated time runs faster than the limit
            "PLAN_SEED": seed,  # each participant's tasks (topics, models, sides) follow the seed too
        })
        rng = np.random.default_rng(seed)
        epoch0 = 1.7e12 + float(rng.uniform(0, 1e9))
        items = range(participants)
        if progress:
            from ..progress import progress as bar

            items = bar(items, total=participants, desc="simulated participants")
        plans, batches = [], 0
        for k in items:
            client = app.test_client()  # a browser of its own (cookies, session)
            prng = np.random.default_rng([seed, k])
            res = simulate_participant(client, prng, k + 1, effect, epoch0 + k * 3_600_000, batch_ms)
            plans += res["turns"]
            batches += res["batches"]
        sim_s = time.perf_counter() - started
        summary: dict[str, Any] = {
            "study": slug, "participants": participants, "effect": effect, "seed": seed,
            "pairwise_turns": len(plans), "telemetry_batches": batches, "batch_ms": batch_ms, "effect_drawn": realised_effect(plans),
            "chose_left": float(np.mean([p["choice"] == 0 for p in plans])),
            "simulate_s": round(sim_s, 1),
        }
        with app.extensions["gazepref"].sessions() as s:
            st = s.scalar(select(store.Study).where(store.Study.slug == slug))
            if out is not None:
                from ..datasets.export import export_parquet
                from ..datasets.store_recording import StoreRecording

                t0 = time.perf_counter()
                manifest = export_parquet(StoreRecording(s, st), out)
                summary.update(out=str(out), export_s=round(time.perf_counter() - t0, 1),
                               exported_turns=manifest.get("turns"))
            else:
                summary["database"] = make_url(url).render_as_string(hide_password=True)
        app.extensions["gazepref"].dispose()
    return summary
