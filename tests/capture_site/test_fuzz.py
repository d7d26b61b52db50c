"""Every request a participant or researcher can send gets a 2xx/3xx or a 4xx (with a JSON
``{"error"}`` on the API), on SQLite and PostgreSQL: the bad inputs of the reliability audit
(issue 18) as fixed examples, then property-based fuzzing (hypothesis) over every endpoint and
the WebSocket's first message."""
from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from gazepref import store
from sitetest import Walker, csrf_of, participants, ws_connect


# a few hundred examples per database, no deadline (a busy CI machine), no example database
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


class CountingBackend:
    """A model backend that counts its calls (the LLM must not be called for a refused request)."""

    def __init__(self):
        self.calls = 0

    def generate(self, messages):
        self.calls += 1
        return f"answer {self.calls} to: {messages[-1]['content'][:50]}"


@pytest.fixture
def backend():
    return CountingBackend()


@pytest.fixture
def site_app(make_app, database, backend):
    extra = {"DATABASE_URL": database} if database else {}
    return make_app(LLM_BACKENDS={"concise": backend, "detailed": backend},
                    INGEST_RATE_PER_S=1e6, INGEST_BURST=1e6, GAZE_RATE_PER_S=1e6, GAZE_BURST=1e6,
                    LOGIN_FREE_ATTEMPTS_PER_ADDRESS=10**6, **extra)  # fuzzed logins come from one address


def _on_task(app) -> tuple[Walker, dict]:
    w = Walker(app.test_client(), f"W-{uuid.uuid4().hex[:12]}")
    w.arrive()
    w.consent()
    return w, w.to_task()


def _turn(w: Walker, data: dict, index: int = 0) -> None:
    r = w.client.post(data["urls"]["turns"], json={"index": index, "prompt": "How does sleep help memory?"},
                      headers={"X-Participant-Token": data["token"]})
    assert r.status_code == 200, r.json


def _is_json_error(r) -> bool:
    return r.is_json and isinstance(r.json, dict) and isinstance(r.json.get("error"), str)


def _post_json_text(w: Walker, url: str, text: str, token: str):
    return w.client.post(url, data=text.encode("utf-8", "surrogatepass"), content_type="application/json",
                         headers={"X-Participant-Token": token})


# --------------------------------------------------------------------------- fixed examples


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text", [
    DEEP,
    '{"index": 0, "prompt": ' + DEEP + "}",
    '{"index": 0, "prompt": "\\ud800"}',
    '{"index": 0, "prompt": "sleep \\u0000 memory"}',
    '{"index": 0, "prompt": "sleep", "x": 1.0e999}',
    '{"index": 0, "prompt": "sleep", "x": NaN}',
], ids=["deep", "deep-prompt", "surrogate", "nul", "overflow", "nan"])
def test_bad_chat_turn_is_a_400_and_calls_no_model(site_app, backend, text):
    w, data = _on_task(site_app)
    r = _post_json_text(w, data["urls"]["turns"], text, data["token"])
    assert r.status_code == 400 and _is_json_error(r), (r.status_code, r.data[:200])
    assert backend.calls == 0
    _turn(w, data)  # the task goes on
    assert backend.calls == 2


@pytest.mark.parametrize("body", [
    DEEP,
    '{"likert": [4, 4], "choice": 1, "origin": 1.7e12, "t_shown": 1, "t_decided": 2, "feedback": "\\udfff"}',
    '{"likert": [4, 4], "choice": 1, "origin": 1.7e12, "t_shown": 1, "t_decided": 2, "feedback": "a\\u0000b"}',
    '{"likert": [4, 4], "choice": 1, "origin": -1e308, "t_shown": 1, "t_decided": 2}',
    '{"likert": [4, 4], "choice": 1, "origin": 1.7e12, "t_shown": 1e300, "t_decided": 2}',
    # a decision before the answers were shown, a time before the page's clock began (both once
    # stored: the turn then lost its samples in the features)
    '{"likert": [4, 4], "choice": 1, "strength": 2, "origin": 1.7e12, "t_shown": 500.0, "t_decided": -9e9}',
    '{"likert": [4, 4], "choice": 1, "strength": 2, "origin": 1.7e12, "t_shown": 500.0, "t_decided": 400.0}',
    '{"likert": [4, 4], "choice": 1, "strength": 2, "origin": 1.7e12, "t_shown": -5.0, "t_decided": 400.0}',
    # a comment over the field's 5000 characters (stored cut at 5000, silently, before)
    '{"likert": [4, 4], "choice": 1, "strength": 2, "origin": 1.7e12, "t_shown": 1, "t_decided": 2, "feedback": "'
    + "word " * 1001 + '"}',
], ids=["deep", "surrogate-feedback", "nul-feedback", "origin", "t_shown", "decided-negative", "decided-first",
       "shown-negative", "long-feedback"])
def test_bad_rating_is_a_400_and_stores_nothing(site_app, body):
    w, data = _on_task(site_app)
    _turn(w, data)
    url = f"{data['urls']['turns']}/0/rating"
    r = _post_json_text(w, url, body, data["token"])
    assert r.status_code == 400 and _is_json_error(r), (r.status_code, r.data[:200])
    ok = {"likert": [4, 4], "choice": 1, "strength": 2, "origin": 1.7e12, "t_shown": 1.0, "t_decided": 2.0}
    r = w.client.post(url, json=ok, headers={"X-Participant-Token": data["token"]})
    assert r.status_code == 200 and r.json["turn"]["rated"] and not r.json.get("already")


@pytest.mark.parametrize("endpoint, status, says", [
    ("/api/gaze/frames", 400, "boundary"),
    # a round is read only once the study is known to take one of its kind (this one: no webcam)
    ("/api/gaze/round", 403, "records no webcam"),
])
def test_rfc2231_multipart_boundary_is_a_400(site_app, endpoint, status, says):
    w, data = _on_task(site_app)
    body = b"--\xe2\x9c\x93\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n{}\r\n--\xe2\x9c\x93--\r\n"
    r = w.client.post(endpoint, data=body, headers={
        "X-Participant-Token": data["token"],
        "Content-Type": "multipart/form-data; boundary*=UTF-8''%E2%9C%93"})
    assert r.status_code == status and says in r.json["error"], r.json


def test_frames_meta_out_of_the_exporters_range_is_a_400(site_app):
    """Times on the page's clock (from 0, in the order taken) in both phases, as telemetry
    batches' (set-up frames took any time, task frames negative and reversed ones)."""
    w, data = _on_task(site_app)
    task = {"phase": "task", "task": data["task"], "seq": 0, "origin": 1.7e12}
    for meta, says in ((task | {"origin": -1e308, "t": [1.0]}, "between"), (task | {"t": [1e300]}, "between"),
                       (task | {"t": [-5.0]}, "between"), (task | {"t": [20.0, 10.0]}, "t goes backwards at 1"),
                       ({"phase": "setup", "t": [1e300]}, "between"), ({"phase": "setup", "t": [-1.0]}, "between")):
        body = (b"--b0\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n" + json.dumps(meta).encode()
                + b"\r\n--b0--\r\n")
        r = w.client.post("/api/gaze/frames", data=body, headers={
            "X-Participant-Token": data["token"], "Content-Type": "multipart/form-data; boundary=b0"})
        assert r.status_code == 400 and says in r.json["error"], (meta, r.json)


@pytest.mark.parametrize("age", ["1.0e999", "-1e400", "nan", "inf", "9" * 5000])
def test_demographics_number_out_of_range_is_asked_again(site_app, age):
    w = Walker(site_app.test_client(), f"W-{uuid.uuid4().hex[:12]}")
    w.arrive()
    w.consent()
    r = w.answer({"age": age})
    assert r.status_code == 400 and "Enter a number" in r.text
    assert w.current_step() == "demographics"


def test_a_free_text_answer_is_never_cut(site_app):
    """A question's text field takes at most 5000 characters (maxlength); a longer answer sent
    anyway was stored cut at 5000, silently. It is asked again, saying so."""
    from gazepref.capture_site.config import Question
    from gazepref.capture_site.questions import MAX_ANSWER, read_answers

    q = (Question(id="summary", label="Summarise", type="text", required=True),)
    answers, errors = read_answers(q, {"summary": "x" * (MAX_ANSWER + 1)})
    assert answers == {} and len(errors) == 1 and "at most 5000 characters (it has 5001)" in errors[0]
    assert read_answers(q, {"summary": "x" * MAX_ANSWER})[0] == {"summary": "x" * MAX_ANSWER}
    from flask import get_template_attribute

    with site_app.test_request_context():
        field = str(get_template_attribute("_macros.html", "question")(q[0]))
    assert '<textarea name="summary"' in field and f'maxlength="{MAX_ANSWER}"' in field


@pytest.mark.parametrize("field", ["age", "step", "csrf_token", "decision"])
def test_nul_in_a_form_is_a_400(site_app, field):
    w = Walker(site_app.test_client(), f"W-{uuid.uuid4().hex[:12]}")
    w.arrive()
    w.consent()
    form = {"csrf_token": csrf_of(w.step().text), "step": "demographics", "age": "30"}

    def post(value: str):
        body = "&".join(f"{_q(k)}={_q(v)}" for k, v in (form | {field: value}).items())
        return w.client.post("/step", data=body, content_type="application/x-www-form-urlencoded")

    assert post("3\x00").status_code == 400
    assert w.current_step() == "demographics"
    # the bytes of a lone surrogate are not UTF-8: the form reads them as U+FFFD, no 5xx
    assert post("3\ud800").status_code in (302, 400)


@pytest.mark.parametrize("path", ["/s/cam%00/", "/s/%ED%A0%80/", "/?PROLIFIC_PID=a%00b",
                                  "/admin/studies/cam%00", "/admin/studies/test-study?x=%00",
                                  "/api/tasks/1/turns%00"])
def test_nul_in_the_address_is_a_4xx(site_app, path):
    client = site_app.test_client()
    _login(site_app, client)
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    if path.startswith("/api/"):
        assert _is_json_error(r)


def test_ids_beyond_the_databases_are_a_404(site_app):
    w, data = _on_task(site_app)
    r = w.client.post("/api/tasks/9223372036854775808/turns", json={"index": 0, "prompt": "hi"},
                      headers={"X-Participant-Token": data["token"]})
    assert r.status_code == 404 and _is_json_error(r)
    researcher = site_app.test_client()
    _login(site_app, researcher)
    page = researcher.get("/admin/studies/test-study").text
    r = researcher.post(f"/admin/participants/{2**63}/delete", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 404


def test_websocket_first_message_with_a_lone_surrogate_is_refused(site_app):
    simple_websocket = pytest.importorskip("simple_websocket")
    from gazepref.capture_site.serving import BackgroundServer

    with BackgroundServer(site_app) as url:
        for first in ('{"token": "\\ud800"}', '{"token": "\\u0000"}', "[" * 50_000, '{"token": 1e999}'):
            ws = ws_connect(url + "/api/gaze/ws")
            try:
                ws.send(first)
                answer = json.loads(ws.receive(timeout=10))
                assert answer["status"] == 401 and "token" in answer["error"]
            finally:
                ws.close()


# --------------------------------------------------------------------------- fuzzing

# text the databases cannot store, mixed into ordinary text
_NASTY = st.sampled_from(["\x00", "\ud800", "\udfff", "$\\frac{a}{$", "'; drop table users; --", "\u202e",
                          "%00", "../../etc/passwd", "\ufeff", "😀"])
TEXT = st.one_of(st.text(max_size=40), st.lists(st.one_of(st.text(max_size=8), _NASTY), max_size=5).map("".join))
NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0, -1, 1.7e12, 1e14, 1e308, -1e308, 2**31, 2**63]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
# the raw JSON literals Python's json would never write
RAW_JSON = st.sampled_from(["1.0e999", "-1e999", "NaN", "Infinity", '"\\ud800"', '"\\u0000"', "[" * 3000,
                            "{" * 20, "", "{", "\xff", "1" + "0" * 400, "-" + "9" * 5000])  # (integers past float64)

CHAT_KEYS = ["index", "prompt", "likert", "choice", "strength", "better", "feedback", "origin", "t_shown",
             "t_decided"]
BATCH_KEYS = ["task", "seq", "origin", "streams", "v"]
FRAME_KEYS = ["phase", "task", "seq", "origin", "t", "kind", "viewport", "targets"]


@st.composite
def json_body(draw, keys: list[str]) -> str:
    """A JSON object text with the endpoint's keys (values of any kind) and now and then a raw
    literal spliced in, or a body of any other kind."""
    obj = draw(st.dictionaries(st.sampled_from(keys) | TEXT, JSON, max_size=len(keys)))
    text = json.dumps(obj)
    if draw(st.booleans()) and obj:
        key = json.dumps(draw(st.sampled_from(sorted(obj))))
        text = text.replace(key + ": ", key + ": " + draw(RAW_JSON) + ", " + key + "2: ", 1)
    return draw(st.one_of(st.just(text), st.just(text), RAW_JSON, JSON.map(json.dumps)))


@st.composite
def multipart(draw) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0", "----WebKitFormBoundaryx7", "", "\u2713", "a" * 300, "b0\x00"]))
    header = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}",
                                   "multipart/form-data; boundary*=UTF-8''%E2%9C%93", "multipart/form-data",
                                   "application/json"]))
    meta = draw(json_body(FRAME_KEYS)).encode("utf-8", "surrogatepass")
    b = "b0".encode()
    parts = b"--" + b + b'\r\nContent-Disposition: form-data; name="meta"\r\n\r\n' + meta + b"\r\n"
    for _ in range(draw(st.integers(0, 2))):
        parts += (b"--" + b + b'\r\nContent-Disposition: form-data; name="frame"; filename="f.jpg"\r\n'
                  b"Content-Type: image/jpeg\r\n\r\n" + draw(st.binary(max_size=64)) + b"\r\n")
    if draw(st.booleans()):
        parts += b"--" + b + b"--\r\n"
    return parts, header


def _request(draw, w: Walker, data: dict, csrf: str, admin_csrf: str) -> tuple[str, str, dict]:
    """(method, path, kwargs for the test client) of one fuzzed request."""
    token = draw(st.sampled_from([data["token"], "", "x", data["token"] + "x", "a.b"]))
    headers = {"X-Participant-Token": token} if token else {}
    task = draw(st.sampled_from([data["task"], 0, -1, 2**31, 2**63, 1]))
    kind = draw(st.sampled_from(["turn", "rating", "ingest", "frames", "round", "arrive", "consent", "step",
                                 "login", "admin", "export", "progress", "delete", "plots"]))
    form_value = TEXT
    if kind == "turn":
        return "POST", f"/api/tasks/{task}/turns", dict(data=draw(json_body(CHAT_KEYS)).encode("utf-8", "surrogatepass"),
                                                        content_type="application/json", headers=headers)
    if kind == "rating":
        index = draw(st.integers(0, 5))
        return "POST", f"/api/tasks/{task}/turns/{index}/rating", dict(
            data=draw(json_body(CHAT_KEYS)).encode("utf-8", "surrogatepass"), content_type="application/json",
            headers=headers)
    if kind == "ingest":
        return "POST", "/api/ingest" + draw(st.sampled_from(["", "?enc=gzip"])), dict(
            data=draw(json_body(BATCH_KEYS)).encode("utf-8", "surrogatepass"), content_type="application/json",
            headers=headers)
    if kind in ("frames", "round"):
        body, ctype = draw(multipart())
        return "POST", f"/api/gaze/{kind}", dict(data=body, headers={**headers, "Content-Type": ctype})
    if kind == "arrive":
        slug = draw(st.sampled_from(["test-study", "nope", "%00", "%ED%A0%80", "a/b"]))
        params = draw(st.dictionaries(st.sampled_from(["PROLIFIC_PID", "workerId", "assignmentId", "pid", "x"]),
                                      TEXT.map(lambda s: s.encode("utf-8", "surrogatepass")), max_size=3))
        return "GET", draw(st.sampled_from(["/", f"/s/{slug}/"])), dict(query_string=params)
    if kind in ("consent", "step", "login"):
        fields = draw(st.dictionaries(st.sampled_from(["decision", "step", "age", "skip", "summary", "username",
                                                       "password", "outcome", "x"]), form_value, max_size=4))
        if draw(st.booleans()):
            fields["csrf_token"] = csrf
        path = {"consent": "/consent", "step": "/step", "login": "/admin/login"}[kind]
        method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT"]))  # (HEAD: test_flow's test_a_head_request_changes_nothing)
        body = "&".join(f"{_q(k)}={_q(v)}" for k, v in fields.items())
        return method, path, dict(data=body.encode(), content_type="application/x-www-form-urlencoded")
    slug = draw(st.sampled_from(["test-study", "nope", "x%00"]))
    if kind == "admin":
        return "GET", draw(st.sampled_from(["/admin/", f"/admin/studies/{slug}"])), {}
    if kind == "export":
        fmt = draw(st.sampled_from(["parquet", "ifllm", "x", "%00"]))
        return "GET", f"/admin/studies/{slug}/export?format={fmt}", {}
    if kind == "progress":
        return "GET", f"/admin/studies/{slug}/progress.json", {}
    if kind == "plots":
        return "GET", f"/admin/studies/{slug}/participants/{draw(TEXT.map(_q)) or 'x'}/plots", {}
    pid = draw(st.sampled_from([0, 2**31, 2**63, 10**6]))  # none of them the fuzzing participant
    return "POST", f"/admin/participants/{pid}/delete", dict(data={"csrf_token": draw(st.sampled_from(
        [admin_csrf, "nope"]))})


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s.encode("utf-8", "surrogatepass"), safe="")


def _login(app, client) -> None:
    with app.extensions["gazepref"].sessions() as s, s.begin():
        if s.scalar(select(store.User).where(store.User.username == "fuzz")) is None:
            s.add(user := store.User(username="fuzz", password_hash=generate_password_hash("fuzz-password")))
            s.flush()
            s.add(store.StudyAccess(user_id=user.id, study_slug=store.ALL_STUDIES))
    page = client.get("/admin/login")
    r = client.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": "fuzz",
                                          "password": "fuzz-password"})
    assert r.status_code == 302, r.status_code


def test_fuzz_every_endpoint_answers_2xx_3xx_or_4xx(site_app):
    w, data = _on_task(site_app)
    _turn(w, data)
    researcher = site_app.test_client()
    _login(site_app, researcher)
    csrf = csrf_of(w.client.get("/step").text)
    admin_csrf = csrf_of(researcher.get("/admin/studies/test-study").text)

    @FUZZ
    @given(st.data())
    def one(draw_data):
        draw = draw_data.draw
        method, path, kw = _request(draw, w, data, csrf, admin_csrf)
        client = researcher if path.startswith("/admin/") and (draw(st.booleans()) or "delete" in path) else w.client
        r = client.open(path, method=method, **kw)
        assert r.status_code < 500, (method, path, kw, r.status_code, r.data[:300])
        if path.startswith("/api/") and r.status_code >= 400:
            assert _is_json_error(r), (path, r.data[:200])

    one()
    with site_app.extensions["gazepref"].sessions() as s:  # the study's rows are still readable
        assert s.scalar(select(func.count()).select_from(store.Participant)) >= 1
        assert participants(s)


def test_fuzz_websocket_first_message(site_app):
    simple_websocket = pytest.importorskip("simple_websocket")
    from gazepref.capture_site.serving import BackgroundServer

    first = st.one_of(json_body(["token"]), st.dictionaries(st.just("token"), JSON).map(json.dumps))
    with BackgroundServer(site_app) as url:
        @settings(FUZZ, max_examples=40)
        @given(first)
        def one(text):
            ws = ws_connect(url + "/api/gaze/ws")
            try:
                ws.send(text)
                raw = ws.receive(timeout=10)
                assert raw is not None, f"no answer to {text[:80]!r}"
                answer = json.loads(raw)
                assert answer["status"] in (401, 403) and answer["error"], (text[:80], answer)
            finally:
                ws.close()

        one()


def test_fuzz_gaze_endpoints_of_a_webcam_study(make_app, database, tmp_path):
    """The frame and calibration-round endpoints with a valid token of a webcam study (the
    requests get past the token and the study checks, into the multipart and meta parsing)."""
    from gazetest import to_calibration, webcam_toml

    extra = {"DATABASE_URL": database} if database else {}
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "cam.toml")), GAZE_RATE_PER_S=1e6, GAZE_BURST=1e6,
                   **extra)
    client = app.test_client()
    token = to_calibration(client, f"CAM-{uuid.uuid4().hex[:10]}")["token"]

    @settings(FUZZ, max_examples=100)
    @given(multipart(), st.sampled_from(["frames", "round"]))
    def one(body_ctype, endpoint):
        body, ctype = body_ctype
        r = client.post(f"/api/gaze/{endpoint}", data=body, headers={"X-Participant-Token": token, "Content-Type": ctype})
        assert r.status_code < 500, (endpoint, ctype, body[:300], r.status_code, r.data[:300])
        if r.status_code >= 400:
            assert _is_json_error(r), r.data[:200]

    one()
