"""The derive step: the turn on screen and the word under each sample, for both kinds of source."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from gazepref import schema
from gazepref.capture_site.hits import word_at
from gazepref.datasets.derive import (WORD_COLUMNS, add_turns, assign_turns, derive_streams, rel_rows,
                                      turn_starts)
from gazepref.datasets.export import export_parquet
from gazepref.datasets.ifllm import open_release
from gazepref.datasets.recording import open_recording
from gazepref.datasets.text_mapping import text_units, window_near

from .synthetic_ifllm import RESP, build

TEXTS = {(0, 0): "Sleep helps memory.", (0, 1): "Yes, it does.", (1, 0): "Naps help too, a little."}


def _turns(shown=(1000.0, 5000.0)) -> list[schema.Turn]:
    out = []
    for k, t in enumerate(shown):
        resp = [schema.Response(p, "m", TEXTS[(k, p)]) for p in (0, 1) if (k, p) in TEXTS]
        out.append(schema.Turn(str(k), "p/1", "p", k, "pairwise" if len(resp) == 2 else "pointwise", "q", resp,
                               t_shown=t))
    return out


def test_assign_turns_last_turn_shown_at_or_before():
    starts = np.array([1000.0, np.nan, 5000.0])  # turn 1 never shown: its time stays with turn 0
    t = np.array([0.0, 999.9, 1000.0, 4999.0, 5000.0, 9e9, np.nan])
    assert assign_turns(t, starts).tolist() == [-1, -1, 0, 0, 2, 2, -1]
    assert assign_turns(t, np.array([np.nan])).tolist() == [-1] * len(t)
    # starts out of clock order (a broken timestamp): the latest start at or before wins
    assert assign_turns(np.array([1500.0, 3500.0]), np.array([1000.0, 3000.0, 2000.0])).tolist() == [0, 1]


def test_turn_starts_on_either_clock():
    turns = _turns()
    turns[1].epoch_ms = 1.7e12
    assert turn_starts(turns, "t").tolist() == [1000.0, 5000.0]
    e = turn_starts(turns, "epoch_ms", offset_ms=3_600_000.0)
    assert np.isnan(e[0]) and e[1] == 1.7e12 + 3_600_000.0


def test_own_turn_wins_and_gaps_are_filled_by_clock():
    tb = pa.table({"t": [500.0, 1500.0, 6000.0], "turn": pa.array([None, 0, None], pa.int32())})
    out = add_turns(tb, np.array([1000.0, 5000.0]))
    assert out.column_names == ["t", "turn"] and out.column("turn").to_pylist() == [-1, 0, 1]
    own = add_turns(pa.table({"t": [6000.0], "turn": pa.array([0], pa.int32())}), np.array([1000.0, 5000.0]))
    assert own.column("turn").to_pylist() == [0]  # the layout row says which turn it was drawn for


def _site_streams() -> dict[str, pa.Table]:
    """Turn 0 (two panes) shown at 1 s, turn 1 (one pane) at 5 s in the same place; the window
    scrolls at 3 s (the panes move up 40 px), pane 0 scrolls its content by 200 px at 4 s."""
    rows = [  # t, target, kind, index, char_start, char_end, x, y, w, h, turn
        (1000.0, "response:0", "element", -1, -1, -1, 100, 100, 300, 200, 0),
        (1000.0, "response:0", "word", 0, 0, 5, 10, 10, 40, 18, 0),
        (1000.0, "response:0", "word", 1, 6, 11, 10, 250, 40, 18, 0),  # below the pane's fold
        (1000.0, "response:1", "element", -1, -1, -1, 500, 100, 300, 200, 0),
        (1000.0, "response:1", "word", 0, 0, 4, 10, 10, 30, 18, 0),
        (1000.0, "response:1", "word", 1, 5, 7, 50, 10, 20, 18, 0),
        (3000.0, "response:0", "element", -1, -1, -1, 100, 60, 300, 200, 0),
        (3000.0, "response:1", "element", -1, -1, -1, 500, 60, 300, 200, 0),
        (5000.0, "response:0", "element", -1, -1, -1, 100, 100, 300, 200, 1),
        (5000.0, "response:0", "word", 0, 0, 4, 10, 10, 40, 18, 1),
        (5000.0, "response:0", "word", 1, 5, 9, 60, 10, 40, 18, 1),
    ]
    layout = pd.DataFrame(rows, columns=["t", "target", "kind", "index", "char_start", "char_end", "x", "y", "w", "h",
                                         "turn"])
    scroll = pd.DataFrame([(4000.0, "response:0", 0.0, 200.0), (5000.0, "response:0", 0.0, 0.0)],
                          columns=["t", "target", "scroll_x", "scroll_y"])
    gaze = pd.DataFrame({
        "t": [500.0, 1000.0, 1200.0, 1300.0, 2000.0, 3500.0, 3600.0, 4500.0, 4999.0, 5000.0, 5100.0, 5200.0],
        "x": [130.0, 130.0, 130.0, 525.0, 562.0, 120.0, 120.0, 120.0, 50.0, 175.0, 120.0, 525.0],
        "y": [115.0, 115.0, 115.0, 115.0, 115.0, 115.0, 75.0, 115.0, 50.0, 115.0, 115.0, 115.0],
    })
    layout_tb = schema.conform("layout", pa.Table.from_pandas(layout, preserve_index=False))
    return {"gaze": schema.conform("gaze", pa.Table.from_pandas(gaze, preserve_index=False)), "layout": layout_tb,
            "scroll": schema.conform("scroll", pa.Table.from_pandas(scroll, preserve_index=False))}


def test_site_samples_get_turns_and_words_from_their_layout():
    streams = _site_streams()
    d = derive_streams(streams, _turns())
    g = d["gaze"].to_pandas()
    assert set(WORD_COLUMNS) <= set(g.columns) and d["layout"].column("turn").null_count == 0
    # before the first turn: no turn and no response, though the point lies where turn 0's box will be
    assert g.turn.tolist() == [-1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    # at 3.5 s the window has scrolled: still in pane 0, no longer on its first word
    assert g.position.tolist() == [-1, 0, 0, 1, 1, 0, 0, 0, -1, 0, 0, -1]
    assert g.word.tolist() == [-1, 0, 0, 0, 1, -1, 0, 1, -1, 1, 0, -1]
    assert g.char_start.tolist() == [-1, 0, 0, 0, 5, -1, 0, 6, -1, 5, 0, -1]
    assert g.char_end.tolist() == [-1, 5, 5, 4, 7, -1, 5, 11, -1, 9, 4, -1]
    on = g.word >= 0
    assert ((g.char_index[on] >= g.char_start[on]) & (g.char_index[on] < g.char_end[on])).all()
    assert (g.char_index[~on] == -1).all()
    # box-relative, scroll included: pane 0 scrolled by 200 px at 4 s, back to 0 for turn 1
    assert (g.rel_x[2], g.rel_y[2]) == (30.0, 15.0)
    assert (g.rel_x[7], g.rel_y[7]) == (20.0, 255.0)
    assert g.rel_y[6] == 15.0  # the window scrolled: the pane's top at 60 px
    assert np.isnan(g.rel_x[0]) and np.isnan(g.rel_x[8])
    # the words are those of each turn's own text
    turns = _turns()
    for r in g[on].itertuples():
        text = TEXTS[(r.turn, r.position)]
        assert text[r.char_start:r.char_end] == text.split()[r.word]
    # the single-sample lookup agrees where the layout has one turn on screen
    lay, scr = streams["layout"].to_pandas(), streams["scroll"].to_pandas()
    for r in g[(g.turn == 0)].itertuples():
        w = word_at(lay[lay.turn == 0], scr, r.t, r.x, r.y)
        assert (w is None) == (r.word < 0)
        if w is not None:
            assert (w.index, w.char_start, w.char_end, w.rel_y) == (r.word, r.char_start, r.char_end, r.rel_y)
    # idempotent: derived streams come back as they are
    again = derive_streams(d, turns)
    assert all(again[k] is d[k] for k in d)


def test_rel_rows_write_the_word_columns_in_ifllm_form():
    turns = _turns()
    d = derive_streams(_site_streams(), turns)
    g = d["gaze"].to_pandas()
    hits = rel_rows(d, turns).to_pandas()
    assert len(hits) == 2 * len(g) and set(hits.source) == {"gaze"}
    for p in (0, 1):
        h = hits[hits.position == p].reset_index(drop=True)
        on = (g.position == p).to_numpy()
        assert h.t.tolist() == g.t.tolist() and h.turn.tolist() == g.turn.tolist()
        assert (h.x[~on] == -1).all() and (h.char_index[~on] == -1).all()
        np.testing.assert_allclose(h.x[on], g.rel_x[on])
        for r, c, k in zip(h.window[on], h.char_index[on], h.turn[on]):
            if c >= 0:
                assert r in TEXTS[(k, p)] and TEXTS[(k, p)][c] in r
    # the IFLLM release's own rows are handed on as they are
    assert rel_rows({"hits": d["gaze"]}, turns) is d["gaze"]


def test_ifllm_turns_use_the_hour_offset_and_exact_query_times(tmp_path: Path):
    build(tmp_path, hour_offset=4)
    rel = open_release(tmp_path)
    g = rel.streams("worker_aaa/1")["gaze"].to_pandas()
    # turn 0 asked at 5 s, turn 1 at 20 s on the trajectories' clock (the query table is 4 h off)
    t = g.t.to_numpy()
    assert (g.turn[t < 5000] == -1).all() and (g.turn[(t >= 5000) & (t < 20000)] == 0).all()
    assert (g.turn[t >= 20000] == 1).all() and g.turn[t == 5000].tolist() == [0]
    assert (g.position[t < 5000] == -1).all()  # the rel rows are off the boxes before the first query


def test_ifllm_samples_land_on_the_response_characters(tmp_path: Path):
    build(tmp_path)
    rel = open_release(tmp_path)
    texts = {0: (RESP["a1"], RESP["a2"]), 1: (RESP["b1"], RESP["b2"])}
    for source in ("gaze", "mouse"):
        s = rel.streams("worker_aaa/1")[source].to_pandas()
        on = s[s.word >= 0]
        assert len(on) > 200
        for r in on.itertuples():
            text = texts[r.turn][r.position]
            # the generator put sample t on character (t // 100) % len(text), in box (t // 1000) % 2
            assert r.position == (int(r.t) // 1000) % 2 and r.char_index == (int(r.t) // 100) % len(text)
            u = text_units(text)
            assert (r.char_start, r.char_end) == (u.word_start[r.word], u.word_end[r.word])
            assert r.rel_x == 10 + r.position and r.rel_y == 20 + r.char_index
        assert (s.char_index[s.position < 0] == -1).all() and s.rel_x[s.position < 0].isna().all()
    g = rel.streams("worker_aaa/1")["gaze"]
    assert set(g.column("camera_ok").to_pylist()) == {1}  # every rel_gaze row says the face was placed well


def test_real_sample_words_match_the_recorded_windows(ifllm_sample: Path):
    """On the IFLLM sample, the character each sample lands on is one its recorded ``window``
    text (the characters around the caret) shows: the window occurs in that turn's response
    right there, the paragraph-counted ones re-anchored."""
    rel = open_release(ifllm_sample)
    by_task = rel.turns_by_task()
    checked = 0
    for tid in list(rel.behavior_dirs)[:8]:
        s = rel.streams(tid, cache=False)
        if "hits" not in s:
            continue
        h = s["hits"].to_pandas()
        for source in ("gaze", "mouse"):
            if source not in s:
                continue
            g = s[source].to_pandas()
            inbox = h[(h.source == source) & (h.x >= 0)].drop_duplicates("t", keep="last").set_index("t")
            on = g[(g.word >= 0) & (g.turn >= 0)]
            for r in on.itertuples():
                text = by_task[tid][r.turn].responses[r.position].text
                assert text[r.char_start:r.char_end] == text[r.char_start:r.char_end].strip() != ""
                # on the word, or on the white space after it (the caret between words)
                assert r.char_start <= r.char_index and not text[r.char_end:r.char_index + 1].strip()
                w = str(inbox.window.get(r.t) or "").strip()
                if len(w) >= 6:
                    assert window_near(text, w, int(r.char_index)), (tid, r.t, w)
                    checked += 1
    assert checked > 1000


def test_parquet_export_derives_the_same_words(ifllm_sample: Path, tmp_path: Path):
    src = open_release(ifllm_sample)
    export_parquet(src, tmp_path / "pq")
    back = open_recording(tmp_path / "pq")
    stored = pd.read_parquet(tmp_path / "pq" / "streams" / "gaze.parquet")
    assert "word" not in stored.columns and "turn" in stored.columns  # words are derived on reading
    for tid in list(src.behavior_dirs)[:4]:
        a, b = src.streams(tid)["gaze"], back.streams(tid)["gaze"]
        for c in ("turn", *WORD_COLUMNS):
            np.testing.assert_array_equal(a.column(c).to_numpy(zero_copy_only=False),
                                          b.column(c).to_numpy(zero_copy_only=False))


def test_site_study_is_mapped_from_its_own_layout_and_exported_as_rel_rows(tmp_path: Path):
    """A study in the site's database: the recording's gaze carries the words from the stored
    layout (no IFLLM ``hits`` stream in between), and the IFLLM-layout export writes ``rel_*``
    rows from those words."""
    from gazepref import store
    from gazepref.datasets.export import export_ifllm
    from gazepref.datasets.store_recording import StoreRecording

    site = _site_streams()
    turns = _turns()
    url = store.sqlite_url(tmp_path / "site.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="pilot", name="Pilot", salt="s")
        p = store.Participant(study=study, pseudonym="p_1", consent=True)
        task = store.Task(participant=p, kind="pairwise", clock_anchor_epoch_ms=1.7e12)
        for tr in turns:
            store.Turn(task=task, index=tr.index, kind=tr.kind, prompt="q", prompt_sent="q", t_shown=tr.t_shown,
                       epoch_ms=1.7e12 + tr.t_shown,
                       responses=[store.Response(position=r.position, model="m", text=r.text) for r in tr.responses])
        db.add_all([study, p, task])
        db.flush()
        for name in ("gaze", "layout", "scroll"):
            db.add(store.make_chunk(task.id, name, 0, site[name], clock_origin_epoch_ms=1.7e12))
        db.commit()
    rec = StoreRecording.open("pilot", db_url=url)
    (t,) = rec.tasks()
    s = rec.streams(t.task_id)
    assert "hits" not in s
    expected = derive_streams(site, turns)["gaze"]
    for c in ("turn", *WORD_COLUMNS):
        np.testing.assert_array_equal(s["gaze"].column(c).to_numpy(zero_copy_only=False),
                                      expected.column(c).to_numpy(zero_copy_only=False))
    export_ifllm(rec, tmp_path / "ifl")
    folder = next((tmp_path / "ifl" / "user_behavior").glob("*/*"))
    left = pd.read_csv(folder / "rel_gaze_one.csv", header=None, names=["x", "y", "window", "char_index", "t",
                                                                        "epoch_ms"], keep_default_na=False)
    g = expected.to_pandas()
    assert left.t.tolist() == g.t.tolist()
    on = (g.position == 0) & (g.word >= 0)
    assert [int(c) for c in left.char_index[on]] == g.char_index[on].tolist()
    assert (left.char_index[~on] == "").all() and (left.x[g.position != 0] == -1).all()
    # ... and the export reads back with the same words under the samples
    back = open_release(tmp_path / "ifl")
    bg = back.streams(back.tasks()[0].task_id)["gaze"].to_pandas()
    assert bg.word[on].tolist() == g.word[on].tolist()
