"""Words/sentences by character offset, and the two ways samples reach words."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from gazepref.datasets.text_mapping import map_to_words, text_units

TEXT = "Paris is the capital. It has 2 million people!\n- museums\n- food"


def test_text_units_words_and_sentences():
    u = text_units(TEXT)
    words = [TEXT[s:e] for s, e in zip(u.word_start, u.word_end)]
    assert words[:5] == ["Paris", "is", "the", "capital.", "It"]
    assert u.n_words == 13
    # sentences: two prose sentences, then each bullet line
    assert u.n_sentences == 4
    assert u.word_sentence.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 3]
    assert u.sentence_start.tolist() == [0, 4, 9, 11]
    # char → word: inside a word, on the space after it (caret between words), out of range
    assert u.word_at(np.array([0, 4, 5, 6, 9, -1, 999])).tolist() == [0, 0, 0, 1, 2, -1, -1]
    assert text_units("").n_words == 0 and text_units("").n_sentences == 0


def test_map_by_char_index_ifllm():
    texts = ["one two three", "alpha beta"]
    hits = pa.table({"position": pa.array([0, 0, 1, 1, 0], pa.int8()),
                     "char_index": pa.array([0, 9, 6, -1, 4], pa.int32())})
    wh = map_to_words(hits, texts)
    assert wh.position.tolist() == [0, 0, 1, 1, 0]
    assert wh.word.tolist() == [0, 2, 1, -1, 1]
    assert wh.char_start.tolist() == [0, 8, 6, -1, 4]


def _layout():
    """Two response elements side by side, 3 word boxes each (one line, 50 px per word)."""
    rows = []
    for p, ex in ((0, 20.0), (1, 700.0)):
        rows.append(dict(t=0.0, target=f"response:{p}", kind="element", index=-1, char_start=-1, char_end=-1,
                         x=ex, y=300.0, w=600.0, h=400.0, turn=0))
        for i in range(3):
            rows.append(dict(t=0.0, target=f"response:{p}", kind="word", index=i, char_start=6 * i, char_end=6 * i + 5,
                             x=10.0 + 50 * i, y=10.0, w=45.0, h=20.0, turn=0))
    # later the left element moves up 100 px (page scroll)
    rows.append(dict(t=1000.0, target="response:0", kind="element", index=-1, char_start=-1, char_end=-1,
                     x=20.0, y=200.0, w=600.0, h=400.0, turn=0))
    return pd.DataFrame(rows)


def test_map_by_word_boxes_site():
    lay = pa.Table.from_pandas(_layout(), preserve_index=False)
    samples = pd.DataFrame({
        "t": [10.0, 20.0, 30.0, 40.0, 1500.0, 50.0],
        "x": [20 + 12, 20 + 65, 700 + 110, 20 + 300, 20 + 12, 5.0],
        "y": [300 + 15, 300 + 15, 300 + 25, 300 + 15, 200 + 15, 10.0],
    })
    wh = map_to_words(samples, lay)
    assert wh.position.tolist() == [0, 0, 1, 0, 0, -1]
    assert wh.word.tolist() == [0, 1, 2, -1, 0, -1]
    assert wh.char_start.tolist() == [0, 6, 12, -1, 0, -1]
    # noisy gaze: nearest word within a tolerance
    assert map_to_words(samples, lay, max_dist_px=200).word[3] == 2
    # an element scrolled by 10 px: the point 5 px below its top is 15 px into the content
    scroll = pd.DataFrame({"t": [0.0], "target": ["response:1"], "scroll_x": [0.0], "scroll_y": [10.0]})
    s2 = pd.DataFrame({"t": [30.0], "x": [700 + 110.0], "y": [300 + 5.0]})
    assert map_to_words(s2, lay).word.tolist() == [-1]
    assert map_to_words(s2, lay, scroll=scroll).word.tolist() == [2]


PARAS = "Intro line here.\n\nSecond paragraph talks about cats and dogs.\n\n- a list item\n- the later one ends it."


def _paragraph_local(text: str, true_ci: list[int]) -> tuple[list[int], list[str]]:
    """What a recorder that counts from the rendered paragraph stores: the index within the
    paragraph (list item) and the paragraph's text from 10 before to 10 after the caret."""
    ci, win = [], []
    for c in true_ci:
        start = max(text.rfind("\n", 0, c) + 1, 0)
        end = text.find("\n", c)
        para = text[start:end if end >= 0 else len(text)]
        local = c - start
        ci.append(local)
        win.append(para[max(0, local - 10):local + 10])
    return ci, win


def test_map_by_char_reanchors_paragraph_counted_char_index():
    u = text_units(PARAS)
    true_ci = [PARAS.index("cats") + 1, PARAS.index("later") + 2, PARAS.index("ends") + 1, PARAS.index("Intro") + 3]
    ci, win = _paragraph_local(PARAS, true_ci)
    assert ci[:3] != true_ci[:3] and ci[3] == true_ci[3]  # the first paragraph counts the same either way
    hits = {"position": np.zeros(4, np.int8), "char_index": np.array(ci), "window": np.array(win, dtype=object)}
    wh = map_to_words(hits, [PARAS])
    assert wh.word.tolist() == u.word_at(np.array(true_ci)).tolist()
    assert wh.char_index.tolist() == true_ci
    # without the window: the stored offsets, on the wrong words
    assert map_to_words({k: hits[k] for k in ("position", "char_index")}, [PARAS]).word.tolist() != wh.word.tolist()


def test_map_by_char_window_checks():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    hits = {"position": np.zeros(5, np.int8),
            "char_index": np.array([12, 12, 12, 3, 7]),
            "window": np.array(["beta gamma de",  # fits char_index: kept
                                "Very Satisfied",  # not in the response (page text): unknown
                                "gam",  # too short to tell: kept
                                None,  # no window: kept
                                "eta theta"], dtype=object)}  # elsewhere in the response: moved there
    wh = map_to_words(hits, [text])
    near = text.index("eta theta") + min(7, 10)
    assert wh.char_anchored.tolist() == [12, -1, 12, 3, near]
    assert wh.word.tolist()[:4] == [2, -1, 2, 0]
    assert text[wh.char_start[4]:].startswith("theta")


# ------------------------------------------------------------ word boxes: same as the pandas version

def _same_hits(a, b) -> None:
    """Every array of two WordHits equal bit for bit (NaN positions and dtypes included)."""
    for f in ("position", "word", "char_start", "char_index", "rel_x", "rel_y", "char_end"):
        u, v = getattr(a, f), getattr(b, f)
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes(), f


def _random_layout(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A layout stream with re-layouts (element moves and re-sent word snapshots), rows of other
    targets, turns with gaps (null), and a scroll stream with repeated times."""
    rows = []
    n_pos = int(rng.integers(1, 4))
    for p in range(n_pos):
        target = f"response:{p}"
        for et in np.sort(rng.choice(np.arange(0, 2000, 50), size=rng.integers(1, 4), replace=False)):
            rows.append(dict(t=float(et), target=target, kind="element", index=-1, char_start=-1, char_end=-1,
                             x=float(rng.integers(0, 600)), y=float(rng.integers(0, 500)),
                             w=float(rng.integers(100, 700)), h=float(rng.integers(50, 500)),
                             turn=int(rng.integers(0, 2))))
        if rng.random() < 0.15:  # a response without word boxes
            continue
        for wt in rng.choice(np.arange(0, 2000, 25), size=rng.integers(1, 5), replace=False):
            n_words = int(rng.integers(1, 30))
            turn = int(rng.integers(0, 2))
            for i in range(n_words):
                cs = 6 * i + int(rng.integers(0, 3))
                rows.append(dict(t=float(wt), target=target, kind="word", index=i, char_start=cs,
                                 char_end=cs + int(rng.integers(0, 8)),
                                 x=float(rng.integers(0, 500)), y=float(rng.integers(0, 400)),
                                 w=float(rng.integers(0, 80)), h=float(rng.integers(0, 30)), turn=turn))
    for _ in range(int(rng.integers(0, 4))):  # not on a response
        rows.append(dict(t=float(rng.integers(0, 2000)), target=rng.choice(["input", "feedback", "response"]),
                         kind=rng.choice(["element", "word"]), index=0, char_start=0, char_end=3,
                         x=0.0, y=0.0, w=2000.0, h=2000.0, turn=0))
    order = rng.permutation(len(rows))  # rows arrive in no particular order
    lay = pd.DataFrame([rows[i] for i in order])
    lay["turn"] = lay["turn"].astype("float64").where(rng.random(len(lay)) > 0.2)  # some rows serve every turn
    ts = rng.integers(0, 40, size=int(rng.integers(1, 30))) * 50.0  # repeated times on purpose
    scroll = pd.DataFrame({"t": ts, "target": [f"response:{int(rng.integers(0, n_pos + 1))}" for _ in ts],
                           "scroll_x": rng.integers(0, 50, len(ts)).astype(float),
                           "scroll_y": rng.integers(0, 800, len(ts)).astype(float)})
    return lay, scroll


def test_map_by_word_boxes_matches_pandas_reference():
    """The numpy word-box mapping gives exactly what the former pandas one did, on random layouts:
    several snapshots, scroll, samples before the first snapshot and outside every box, max_dist
    0 and > 0, turn filtering with null turns, every input type, empty layouts and no word rows."""
    from gazepref.datasets.text_mapping import _map_by_boxes

    from .text_mapping_reference import map_by_boxes_reference

    rng = np.random.default_rng(7)
    CASES = 24  # noqa: N806 (every kind of case below comes up; 60 cost 18 s, mostly the pandas reference)
    checked = hit = 0
    for case in range(CASES):
        lay, scroll = _random_layout(rng)
        if case % 10 == 9:
            lay = lay[lay["kind"] != "word"]
        if case % 15 == 14:
            lay = lay.iloc[:0]
        n = int(rng.integers(0, 400))
        samples = pd.DataFrame({"t": rng.uniform(-200, 2500, n), "x": rng.uniform(-50, 1400, n),
                                "y": rng.uniform(-50, 1100, n)})
        if n and len(lay):  # some samples at the layout's own times and on whole pixels (box edges)
            on = rng.random(n) < 0.3
            samples.loc[on, "t"] = rng.choice(lay["t"].to_numpy(), on.sum())
            samples.loc[on, ["x", "y"]] = np.round(samples.loc[on, ["x", "y"]].to_numpy())
        if n:
            samples.loc[rng.random(n) < 0.03, "t"] = np.nan
            samples.loc[rng.random(n) < 0.01, "t"] = np.inf
        lay_tb = pa.Table.from_pandas(lay, preserve_index=False)
        for layout, scr, smp in ((lay_tb, pa.Table.from_pandas(scroll, preserve_index=False), pa.Table.from_pandas(samples)),
                                 (lay, scroll, samples),
                                 (lay.to_dict("list"), scroll.to_dict("list"), samples.to_dict("list")),
                                 (lay_tb, None, samples)):
            for dist in (0.0, 35.0):
                for turn in (None, 0, 1):
                    new = _map_by_boxes(smp, layout, scr, dist, turn)
                    try:
                        old = map_by_boxes_reference(smp, layout, scr, dist, turn)
                    except AttributeError:  # the pandas version failed on an empty mapping (float target)
                        assert len(lay) == 0 and isinstance(layout, dict)
                        assert (new.position == -1).all() and np.isnan(new.rel_x).all()
                        continue
                    _same_hits(new, old)
                    checked += 1
                    hit += int((new.word >= 0).sum())
    assert checked > CASES * 4 * 2 * 3 * 0.9 and hit > 400  # the cases reach words, not only misses
