import tomllib

import pytest

from gazepref.capture_site.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config
from gazepref.capture_site.plan import make_plan, make_steps


def default_doc() -> dict:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def test_embedded_default_is_valid_and_offline():
    cfg = load_config()
    assert cfg.slug == "demo" and cfg.webcam == "off" and not cfg.calibration
    assert {m.backend for m in cfg.models.values()} == {"demo"}
    assert cfg.pairwise_tasks == cfg.pointwise_tasks == 1
    assert [q.id for q in cfg.post_task_questions][:3] == ["summary", "understand_after", "copy_sentence"]


def test_the_default_files_commented_gaze_example_is_a_valid_gaze_table():
    """The ``# [gaze]`` example of the file researchers copy, uncommented (webcam on), is read
    as it stands, and every key it shows is one the study site knows with the value shown."""
    from gazepref.capture_site.gaze_settings import gaze_settings

    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    start = lines.index("# [gaze]")
    example = []
    for line in lines[start + 1:]:
        if not line.startswith("# ") or "=" not in line:
            break
        example.append(line[2:])
    gaze = tomllib.loads("\n".join(example))
    assert {"min_frames", "calibration_fallback", "setup_timeout_s", "interaction_calibration"} <= set(gaze)
    doc = default_doc()
    doc["study"]["webcam"] = "required"
    doc["gaze"] = {**gaze, "compute": "server"}  # (keep_frames, if shown on, needs the pictures)
    settings = gaze_settings(parse_config(doc), "example", strict=True)
    assert {k: getattr(settings, k) for k in gaze if k != "compute"} == {k: v for k, v in gaze.items() if k != "compute"}


@pytest.mark.parametrize("change, message", [
    (lambda d: d["study"].pop("slug"), "missing study.slug"),
    (lambda d: d["tasks"].update(min_turns="three"), "tasks.min_turns must be an integer"),
    (lambda d: d["tasks"].update(min_turns=5, max_turns=2), "max_turns (2) is below tasks.min_turns (5)"),
    (lambda d: d["assignment"].update(pairs=[["demo-concise", "gpt-9"]]), "model 'gpt-9'"),
    (lambda d: d["study"].update(webcam="sometimes"), "study.webcam must be one of off, optional, required"),
    (lambda d: d.update(surprise={}), "unknown section 'surprise'"),
    (lambda d: d["models"].update(remote={"backend": "openai", "model": "m"}), "missing models.remote.base_url"),
    (lambda d: d["post_task_questions"][3].pop("expected"), "needs 'expected'"),
    # a number question's bounds: the page's input and the server's check
    (lambda d: d["demographics_questions"][0].update(min=18, max=5), "demographics_questions[0].max must be a number >= min (18)"),
    (lambda d: d["demographics_questions"][0].update(min=0.5, max=10),  # (the page's input: 1.5, 2.5, ... only)
     "demographics_questions[0].min must be a whole number with integer = true (integer = false takes decimals)"),
    (lambda d: d["demographics_questions"][0].update(max=float("inf")), "demographics_questions[0].max must be a finite number"),
    (lambda d: d["demographics_questions"][0].update(integer="yes"), "demographics_questions[0].integer must be true or false"),
    (lambda d: d["demographics_questions"][1].update(min=0), "unknown key demographics_questions[1].min"),
    # (after a number question the message named its bound, "maximum", for the table)
    (lambda d: d["demographics_questions"][1].update(id="age"), "demographics_questions: duplicate question id 'age'"),
    (lambda d: d["modifiers"][0].update(probability=2), "modifiers[0].probability must be a number in 0..1"),
    (lambda d: d.update(topics=[]), "at least one [[topics]]"),
    # an empty code: the done page would show none and Prolific's link would carry "cc="
    (lambda d: d["study"].update(completion_code=" "), 'study.completion_code must be a code or "auto"'),
    # a misspelt key is named instead of its default silently standing in
    (lambda d: d["tasks"].update(min_turn=5), "unknown key tasks.min_turn (known: pairwise,"),
    (lambda d: d["study"].update(webcan="required"), "unknown key study.webcan"),
    (lambda d: d["topics"][1].update(titel="x"), "unknown key topics[1].titel"),
    (lambda d: d["post_task_questions"][0].update(lable="x"), "unknown key post_task_questions[0].lable"),
    (lambda d: d["consent"].update(camera_image=True), "unknown key consent.camera_image"),
    # the demo backend's options are checked at start, not at a participant's first turn
    (lambda d: d["models"]["demo-concise"].update(variant="short"), "models.demo-concise.variant must be one of"),
    (lambda d: d["models"]["demo-concise"].update(rank=-1), "models.demo-concise.rank must be an integer >= 0"),
    # a misspelt option of a demo or hf model (an hf one failed every participant's turn with a 500)
    (lambda d: d["models"]["demo-concise"].update(varient="detailed"), "unknown key models.demo-concise.varient"),
    (lambda d: d["models"].update(local={"backend": "hf", "path": "m", "max_new_token": 64}),
     "unknown key models.local.max_new_token (known: backend, path, max_new_tokens, temperature, device)"),
    (lambda d: d["models"].update(local={"backend": "hf", "path": "m", "temperature": "warm"}),
     "models.local.temperature must be a finite number >= 0"),
    # a task's answers are one table: the post-task answer replaced the pre-task one of the same id,
    # a question "models" the task's models (every chat turn then failed), "x_passed" an attention verdict
    (lambda d: d["post_task_questions"][1].update(id="understand_before"),
     "post_task_questions[1].id 'understand_before': a task keeps its answers under their ids and "
     "'understand_before' is already pre_task_questions[0]'s"),
    (lambda d: d["pre_task_questions"][0].update(id="models"),
     "pre_task_questions[0].id 'models': a task keeps its answers under their ids and 'models' is already "
     "the task's own entry (reserved: topic_id, models, finished, calibration_unit)"),
    (lambda d: d["post_task_questions"][4].update(id="attention_passed"),
     "post_task_questions[4].id 'attention_passed': a task keeps its answers under their ids and "
     "'attention_passed' is already post_task_questions[3]'s"),
    # an attention check nobody can pass (the scale is 1-5), a topic never shown (a task keeps its
    # topic's id), an answer without a key
    (lambda d: d["post_task_questions"][3].update(expected="7"),
     "post_task_questions[3].expected must be one of the scale's values 1..5"),
    (lambda d: d["topics"][2].update(id="sleep"), "topics[2].id must be a non-empty id of its own (got 'sleep', "
                                                  "also topics[0]'s)"),
    (lambda d: d["topics"][1].update(id=" "), "topics[1].id must be a non-empty id of its own (got '')"),
    (lambda d: d["pre_task_questions"][0].update(id=""), "pre_task_questions[0].id must be a non-empty id"),
    # on Prolific a forgotten code silently became "auto": codes Prolific cannot check
    (lambda d: (d["study"].pop("completion_code"), d.update(platform={"name": "prolific"})),
     'missing study.completion_code (with platform.name = "prolific"'),
])
def test_config_errors_name_the_key(change, message):
    doc = default_doc()
    change(doc)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_config(doc, "my.toml")


def test_a_stored_config_is_read_as_it_is():
    """The site reads each study's stored config (``strict=False``): a key a newer version does not
    know does not stop a study that is running."""
    doc = default_doc()
    doc["tasks"]["retired_option"] = 1
    assert parse_config(doc, "study 'demo'", strict=False).min_turns == 3


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(gaze={"idle_s": float("inf")}), r"gaze\.idle_s must be a finite number > 0"),
    (lambda d: d.update(gaze={"pass_accuracy_px": float("nan")}), r"gaze\.pass_accuracy_px must be a finite number"),
    (lambda d: d["study"].update(completion_code=""), r"study\.completion_code must be a code"),
    (lambda d: d["models"]["demo-concise"].update(variant="short"), r"models\.demo-concise\.variant must be one of"),
    (lambda d: d["pre_task_questions"][0].update(id="models"), r"'models' is already the task's own entry"),
    (lambda d: d["post_task_questions"][3].update(expected="7"), r"expected must be one of the scale's values"),
    (lambda d: d["topics"][2].update(id="sleep"), r"topics\[2\]\.id must be a non-empty id of its own"),
    (lambda d: (d["study"].pop("completion_code"), d.update(platform={"name": "prolific"})),
     r"missing study\.completion_code"),
])
def test_a_stored_config_keeps_working_when_a_newer_check_refuses_a_value(change, message):
    """The value checks ``strict`` adds refuse a study file, but a study already running with
    such a value in its stored config keeps its pages (``strict=False``)."""
    from gazepref.capture_site.gaze_settings import gaze_settings

    doc = default_doc()
    doc["study"]["webcam"] = "required"
    change(doc)
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, "my.toml")
    cfg = parse_config(doc, "study 'demo'", strict=False)
    gaze = gaze_settings(cfg)  # as the site's pages read it
    assert (gaze.idle_s, cfg.completion_code) == (doc.get("gaze", {}).get("idle_s", 300.0),
                                                 doc["study"].get("completion_code", "auto"))


def test_load_config_reports_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nslug = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="study config not found"):
        load_config(tmp_path / "missing.toml")


def test_steps_include_calibration_slot_when_webcam_is_on():
    doc = default_doc()
    doc["study"]["webcam"] = "required"
    cfg = parse_config(doc)
    import random

    plan = make_plan(cfg, [], random.Random(1))
    steps = make_steps(cfg, plan)
    assert steps[:3] == ["demographics", "instructions", "calibration"]
    assert steps[3:] == ["pre:0", "task:0", "post:0", "pre:1", "task:1", "post:1", "done"]


@pytest.mark.parametrize("change, first_steps", [
    (lambda d: None, ["demographics", "instructions", "pre:0"]),
    # no [instructions] text: no empty "Instructions" page with a Start button and nothing to read
    (lambda d: d.pop("instructions"), ["demographics", "pre:0"]),
    (lambda d: d["instructions"].update(text="  "), ["demographics", "pre:0"]),
    (lambda d: d.pop("demographics_questions"), ["instructions", "pre:0"]),
])
def test_steps_leave_out_pages_with_nothing_on_them(change, first_steps):
    import random

    doc = default_doc()
    change(doc)
    cfg = parse_config(doc)
    assert make_steps(cfg, make_plan(cfg, [], random.Random(1)))[:len(first_steps)] == first_steps


def test_balanced_quotas_keep_arms_within_one():
    import random

    doc = default_doc()
    doc["assignment"]["pairs"] = [["demo-concise", "demo-detailed"], ["demo-detailed", "demo-concise"]]
    doc["assignment"]["pointwise"] = ["demo-concise", "demo-detailed"]
    cfg = parse_config(doc)
    plans, rng = [], random.Random(0)
    for _ in range(9):
        plans.append(make_plan(cfg, plans, rng))
    pairs = [tuple(t["models"]) for p in plans for t in p if t["kind"] == "pairwise"]
    singles = [t["models"][0] for p in plans for t in p if t["kind"] == "pointwise"]
    assert abs(pairs.count(("demo-concise", "demo-detailed")) - pairs.count(("demo-detailed", "demo-concise"))) <= 1
    assert abs(singles.count("demo-concise") - singles.count("demo-detailed")) <= 1
