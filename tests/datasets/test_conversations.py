"""Conversation-log readers: small files in each format written here (with malformed records), a
folder of logs, the IFLLM sample as conversations, and the JSONL round trip."""
from __future__ import annotations

import gzip
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gazepref import UserError
from gazepref.datasets import conversations as C

OPENAI = [
    {"id": "a1", "user": "alice", "model": "gpt-x", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "That's wrong, it is 4."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]},
        {"role": "tool", "content": "calculator: 4"},
        {"role": "assistant", "content": "Sorry, 2+2 is 4.", "model": "gpt-y"}]},
]
OPENAI_BAD = [
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps({"id": "x", "messages": "hello"}),
    json.dumps({"id": "x", "messages": [{"content": "no role"}]}),
    json.dumps({"id": "x", "messages": [{"role": "narrator", "content": "?"}, {"role": "assistant", "content": "a"}]}),
    json.dumps({"id": "x", "messages": [{"role": "user", "content": "only a question"}]}),
    json.dumps({"id": "x", "chat": []}),
]
SHAREGPT = [
    {"id": "s1", "conversations": [{"from": "human", "value": "Hi, name a colour."}, {"from": "gpt", "value": "Blue."},
                                   {"from": "human", "value": "Another one?"}, {"from": "gpt", "value": "Red."}]},
    {"id": "s2", "conversations": [{"from": "system", "value": "You are nice."}, {"from": "user", "value": "Hello"},
                                   {"from": "chatgpt", "value": "Hi there!"}]},
    {"id": "s3", "conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]},
]
WILDCHAT = [
    {"conversation_hash": "h1", "hashed_ip": "ip1", "model": "gpt-4", "language": "English", "conversation": [
        {"role": "user", "content": "Write a haiku about rain.", "turn_identifier": 11},
        {"role": "assistant", "content": "Rain taps the window", "turn_identifier": 11},
        {"role": "user", "content": "Make it three lines.", "turn_identifier": 12},
        {"role": "assistant", "content": "Rain taps the window\nsoft drums\nthe night listens", "turn_identifier": 12}]},
    {"conversation_hash": "h2", "hashed_ip": "ip2", "model": "gpt-3.5-turbo", "conversation": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]},
]


def _jsonl(path, records, bad=()):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in [*records, *bad]))
    return path


def test_openai_messages_jsonl_and_malformed_records_counted(tmp_path):
    p = _jsonl(tmp_path / "chats.jsonl", OPENAI, OPENAI_BAD)
    rep = C.ReadReport()
    convs = list(C.read_log(p, report=rep))
    assert len(convs) == 1
    c = convs[0]
    assert (c.conversation_id, c.user_id, c.source) == ("a1", "alice", "openai")
    assert [t.role for t in c.turns] == ["system", "user", "assistant", "user", "assistant", "assistant"]
    assert c.turns[1].text == "What is 2+2?"  # the text parts of a content list
    assert c.turns[4].text == ""  # a tool call carries no text
    assert [t.model for t in c.turns if t.role == "assistant"] == ["gpt-x", "gpt-x", "gpt-y"]
    assert rep.skipped_messages == {"tool": 1}
    assert rep.records == 1 + len(OPENAI_BAD) and rep.conversations == 1
    assert rep.malformed_total == len(OPENAI_BAD)
    assert rep.malformed == {
        "not valid JSON (Expecting property name enclosed in double quotes)": 1,
        "record is not a JSON object": 1, "messages is not a list": 1, "message 0 has no role": 1,
        "message 0 has an unknown role 'narrator'": 1, "no user or no assistant message": 1,
        "no messages, conversations or conversation list": 1}
    assert rep.examples[0].startswith("chats.jsonl:2:") and len(rep.examples) == C.MAX_EXAMPLES
    d = rep.to_dict()
    assert d["malformed"] == len(OPENAI_BAD) and d["formats"] == {"openai": 1}
    # the only exchange: the assistant's "5" followed by the user's correction
    assert [(i, q, a.text, r.text) for i, q, a, r in c.exchanges()] == [(2, "What is 2+2?", "5", "That's wrong, it is 4.")]


def test_strict_stops_at_the_first_malformed_record(tmp_path):
    p = _jsonl(tmp_path / "chats.jsonl", OPENAI, OPENAI_BAD)
    with pytest.raises(UserError, match=r"chats.jsonl:2: not valid JSON"):
        list(C.read_log(p, strict=True))


def test_sharegpt_json_list(tmp_path):
    p = tmp_path / "sharegpt.json"
    p.write_text(json.dumps(SHAREGPT))
    rep = C.ReadReport()
    convs = list(C.read_log(p, report=rep))
    assert [c.conversation_id for c in convs] == ["s1", "s2"]
    assert [(t.role, t.text) for t in convs[0].turns] == [("user", "Hi, name a colour."), ("assistant", "Blue."),
                                                           ("user", "Another one?"), ("assistant", "Red.")]
    assert [t.role for t in convs[1].turns] == ["system", "user", "assistant"]
    assert convs[0].user_id is None and convs[0].source == "sharegpt"
    assert rep.malformed == {"message 0 has no value": 1} and rep.examples == ["sharegpt.json:record 3: message 0 has no value"]
    assert [(i, a.text, r.text) for i, _, a, r in convs[0].exchanges()] == [(1, "Blue.", "Another one?")]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_wildchat_records_in_jsonl_gzip_and_parquet(tmp_path, suffix):
    p = tmp_path / f"wildchat{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(WILDCHAT), p)
    elif suffix.endswith(".gz"):
        with gzip.open(p, "wt") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in WILDCHAT))
    else:
        _jsonl(p, WILDCHAT)
    convs = list(C.read_log(p, fmt="wildchat"))
    assert [(c.conversation_id, c.user_id) for c in convs] == [("h1", "ip1"), ("h2", "ip2")]
    assert [t.model for t in convs[0].turns] == ["", "gpt-4", "", "gpt-4"]
    assert convs[0].turns[0].turn_id == "11"
    assert convs[0].turns[3].text.count("\n") == 2


def test_auto_format_per_record_and_forced_format(tmp_path):
    p = _jsonl(tmp_path / "mixed.jsonl", [OPENAI[0], SHAREGPT[0], WILDCHAT[0]])
    rep = C.ReadReport()
    assert [c.source for c in C.read_log(p, report=rep)] == ["openai", "sharegpt", "wildchat"]
    rep = C.ReadReport()
    assert [c.conversation_id for c in C.read_log(p, fmt="sharegpt", report=rep)] == ["s1"]
    assert rep.malformed == {"conversations is not a list": 2}
    with pytest.raises(UserError, match="unknown log format"):
        list(C.read_log(p, fmt="csv"))


def test_repeated_conversation_ids_are_made_unique(tmp_path):
    """A source that repeats an id (WildChat's hashes of identical conversations, a file merged
    twice) yields unique ids in source order, so rows keyed by (conversation, turn) never mix two
    conversations; a source's own id that looks like a renamed one is not reused."""
    def conv(cid, answer):
        return {"id": cid, "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": answer}]}

    _jsonl(tmp_path / "a.jsonl", [conv("x", "one"), conv("x#2", "two"), conv("x", "three"), conv("x", "four")])
    _jsonl(tmp_path / "b.jsonl", [conv("x", "five")])
    rep = C.ReadReport()
    got = [(c.conversation_id, c.turns[-1].text) for c in C.open_conversations(tmp_path, report=rep)]
    assert got == [("x", "one"), ("x#2", "two"), ("x#3", "three"), ("x#4", "four"), ("x#5", "five")]
    assert rep.repeated_ids == 3 and rep.to_dict()["repeated_ids"] == 3
    assert [c.conversation_id for c in C.open_conversations(tmp_path)] == [i for i, _ in got]  # stable


def test_folder_of_logs_and_bad_sources(tmp_path):
    _jsonl(tmp_path / "a.jsonl", OPENAI)
    (tmp_path / "b.json").write_text(json.dumps(SHAREGPT[:2]))
    (tmp_path / "notes.txt").write_text("ignored")
    assert [c.conversation_id for c in C.open_conversations(tmp_path)] == ["a1", "s1", "s2"]
    with pytest.raises(UserError, match="no such file or folder"):
        list(C.open_conversations(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no recording and no conversation logs"):
        list(C.open_conversations(empty))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(UserError, match="not valid JSON"):
        list(C.read_log(tmp_path / "broken.json"))


def test_ifllm_recording_as_conversations(ifllm_sample, tmp_path):
    from gazepref.datasets.recording import open_recording

    rec = open_recording(ifllm_sample)
    by_task = rec.turns_by_task()
    rep = C.ReadReport()
    convs = list(C.open_conversations(ifllm_sample, report=rep))
    assert len(convs) == len(by_task) == rep.conversations and rep.malformed_total == 0
    for c in convs:
        turns = by_task[c.conversation_id]
        assert c.user_id == turns[0].participant_id and c.source == "recording"
        assert [t.role for t in c.turns] == ["user", "assistant"] * len(turns)
        assert [t.text for t in c.turns[::2]] == [t.prompt for t in turns]  # the queries in order
        assert [t.text for t in c.turns[1::2]] == [t.responses[0].text for t in turns]
        assert [t.model for t in c.turns[1::2]] == [t.responses[0].model for t in turns]
        assert len(list(c.exchanges())) == len(turns) - 1
        # the prompts of pairs and examples: the queries as the LLM received them
        assert [m["content"] for m in c.messages()[::2]] == [t.prompt_sent or t.prompt for t in turns]
    assert any(t.prompt_sent and t.prompt_sent != t.prompt for ts in by_task.values() for t in ts)  # (the modifier)
    # written out as an OpenAI-style log and read back: the same conversations
    p = tmp_path / "ifllm.jsonl"
    _jsonl(p, list(C.iter_records(convs)))
    back = list(C.read_log(p))
    assert [(c.conversation_id, c.user_id) for c in back] == [(c.conversation_id, c.user_id) for c in convs]
    assert [[(t.role, t.text, t.model) for t in c.turns] for c in back] == \
        [[(t.role, t.text, t.model) for t in c.turns] for c in convs]


def test_the_same_chats_in_every_format_read_the_same(feedback_log, tmp_path):
    """The tests' feedback log as ShareGPT (a JSON list) and WildChat records (Parquet): the same turns."""
    ref = list(C.read_log(feedback_log))
    share = [{"id": c.conversation_id, "conversations": [
        {"from": {"user": "human", "assistant": "gpt"}.get(t.role, t.role), "value": t.text} for t in c.turns]}
        for c in ref]
    (tmp_path / "sharegpt.json").write_text(json.dumps(share))
    wild = [{"conversation_hash": c.conversation_id, "hashed_ip": c.user_id, "model": c.turns[-1].model or "m",
             "conversation": [{"role": t.role, "content": t.text} for t in c.turns]} for c in ref]
    pq.write_table(pa.Table.from_pylist(wild), tmp_path / "wildchat.parquet")
    for p, fmt in ((tmp_path / "sharegpt.json", "sharegpt"), (tmp_path / "wildchat.parquet", "wildchat")):
        got = list(C.read_log(p))
        assert {c.source for c in got} == {fmt}
        assert [(c.conversation_id, [(t.role, t.text) for t in c.turns]) for c in got] == \
            [(c.conversation_id, [(t.role, t.text) for t in c.turns]) for c in ref]
        assert [[(i, q, a.text, r.text) for i, q, a, r in c.exchanges()] for c in got] == \
            [[(i, q, a.text, r.text) for i, q, a, r in c.exchanges()] for c in ref]
    assert [c.user_id for c in C.read_log(tmp_path / "wildchat.parquet")] == [c.user_id for c in ref]


def test_site_study_and_parquet_export_as_conversations(tmp_path, ifllm_sample):
    """A study in the site's database (by its slug) and a gazepref Parquet export read like the release."""
    from gazepref import store
    from gazepref.datasets.export import export_parquet
    from gazepref.datasets.recording import open_recording

    url = store.sqlite_url(tmp_path / "site.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="pilot", name="Pilot", salt="s3cret")
        p = store.Participant(study=study, pseudonym="p_1a2b", platform="prolific", consent=True)
        task = store.Task(participant=p, kind="pointwise", topic="France", clock_anchor_epoch_ms=1.7e12)
        turns = [store.Turn(task=task, index=0, kind="pointwise", prompt="Capital of France?", prompt_sent="x",
                            responses=[store.Response(position=0, model="demo-a", text="Lyon.")]),
                 store.Turn(task=task, index=1, kind="pointwise", prompt="Wrong, it is Paris.", prompt_sent="y",
                            responses=[store.Response(position=0, model="demo-a", text="Yes, Paris.")])]
        db.add_all([study, p, task, *turns])
        db.commit()
    (c,) = C.open_conversations("pilot", db=url)
    assert c.user_id == "p_1a2b" and c.source == "recording"
    assert [(t.role, t.text, t.model) for t in c.turns] == [
        ("user", "Capital of France?", ""), ("assistant", "Lyon.", "demo-a"),
        ("user", "Wrong, it is Paris.", ""), ("assistant", "Yes, Paris.", "demo-a")]
    assert [(i, q, a.text, r.text) for i, q, a, r in c.exchanges()] == [(1, "Capital of France?", "Lyon.",
                                                                          "Wrong, it is Paris.")]

    export_parquet(open_recording(ifllm_sample), tmp_path / "pq")
    key = [(c.conversation_id, c.user_id, [(t.role, t.text, t.model) for t in c.turns]) for c in
           C.open_conversations(ifllm_sample)]
    assert key == [(c.conversation_id, c.user_id, [(t.role, t.text, t.model) for t in c.turns])
                   for c in C.open_conversations(tmp_path / "pq")]


@pytest.mark.parametrize("name", ["chats.jsonl", "chats.json"])
def test_a_byte_order_mark_is_not_a_malformed_record(feedback_log, tmp_path, name):
    """Editors on Windows (Notepad, PowerShell's Out-File) start UTF-8 files with a BOM; the first
    record must not be lost to it (it was counted as 'not valid JSON')."""
    recs = [json.loads(x) for x in feedback_log.read_text().splitlines()]
    body = json.dumps(recs) if name.endswith(".json") else "".join(json.dumps(r) + "\n" for r in recs)
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode())
    report = C.ReadReport()
    got = list(C.open_conversations(tmp_path / name, report=report))
    assert not report.malformed and [c.conversation_id for c in got] == [r["id"] for r in recs]


def _preference_rows(path):
    from gazepref.datasets import preference

    return preference.load(path)["train"].to_list()


def _text_feedback_rows(path):
    from gazepref.signals import text_feedback

    return text_feedback.load_jsonl(path)


@pytest.mark.parametrize("read", [_preference_rows, _text_feedback_rows], ids=["preference.load", "load_jsonl"])
def test_a_byte_order_mark_is_not_text_in_any_jsonl_reader(tmp_path, read):
    """The other JSON-lines readers share :func:`read_jsonl`: a user's pairs file or feedback file
    saved with a BOM reads whole (it stopped at line 1 as not JSON), and a bad line is named."""
    rows = [{"prompt": "q1", "chosen": "a", "rejected": "b"}, {"prompt": "q2", "chosen": "c", "rejected": "d"}]
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert read(path) == rows
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(rows[0]) + "\n\n{not json\n").encode())
    with pytest.raises(UserError, match=r"pairs.jsonl, line 3: not valid JSON"):
        read(path)


@pytest.mark.parametrize("name, write", [
    ("table.csv", lambda p: p.write_text("query_ID,user_id,user_query\n1,w1,hello\n2,w1,thanks\n")),
    ("features.parquet", lambda p: pq.write_table(pa.table({"task_id": ["w/1", "w/2"], "n_chars": [3, 4]}), p)),
    ("other.jsonl", lambda p: _jsonl(p, [{"foo": 1}, {"bar": [1, 2]}])),
    ("empty.jsonl", lambda p: p.write_text("\n")),  # mined "0 answers from 0 conversations", exit 0
    ("openai_as_sharegpt.jsonl", lambda p: _jsonl(p, OPENAI)),  # read with --format sharegpt
])
def test_a_source_without_any_conversation_is_a_user_error(tmp_path, name, write, capsys):
    """A file none of whose records is a conversation (the wrong file, or the wrong --format) was
    mined "successfully": 0 conversations, exit status 0 and an empty feedback table."""
    from gazepref.cli import main

    p = tmp_path / name
    write(p)
    fmt = "sharegpt" if "as_sharegpt" in name else "auto"
    says = "no record in it" if name == "empty.jsonl" else r"none of its \d+ records is a conversation \(e\.g\. " + name
    with pytest.raises(UserError, match=says):
        list(C.open_conversations(p, fmt=fmt))
    assert main(["feedback", "mine", str(p), "--format", fmt, "--out", str(tmp_path / "mined")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(says, err[0]), err


def test_a_source_with_some_conversations_still_counts_the_rest(tmp_path):
    p = _jsonl(tmp_path / "mixed.jsonl", OPENAI, OPENAI_BAD)
    rep = C.ReadReport()
    assert len(list(C.open_conversations(p, report=rep))) == 1 and rep.malformed_total == len(OPENAI_BAD)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="no record in it"):  # the wrong file: no empty result (above)
        list(C.open_conversations(empty))


#: SOURCE arguments that are neither a file nor a folder (``{tmp}``: the test's folder)
MISSING_SOURCES = ["{tmp}/missing.jsonl", "{tmp}/no/such/dir", "bad*slug", "no_such_study"]


@pytest.mark.parametrize("spec", MISSING_SOURCES)
def test_a_missing_source_says_what_open_source_says(tmp_path, monkeypatch, spec):
    """Neither a file nor a folder: the logs reader's error is ``open_source``'s, with its hint
    ("and ... is not a study slug", or the study it looked for), not a bare "no such file"."""
    from gazepref.datasets.sources import open_source

    monkeypatch.delenv("GAZEPREF_DATABASE_URL", raising=False)
    monkeypatch.delenv("GAZEPREF_INSTANCE", raising=False)
    monkeypatch.chdir(tmp_path)
    spec = spec.format(tmp=tmp_path)
    with pytest.raises(UserError) as want:
        open_source(spec)
    with pytest.raises(UserError) as got:
        list(C.open_conversations(spec))
    assert str(got.value) == str(want.value) and ("not a study slug" in str(got.value)
                                                   or "nor a study" in str(got.value))
