"""LLM backends (gazepref.llm): the offline demo, an OpenAI-compatible server (a fake on 127.0.0.1),
local HF, and the one generation helper and fallback chat template."""

import pytest

from gazepref.llm import BackendError, build_backend


def chat(*user_messages):
    return [{"role": "user", "content": m} for m in user_messages]


def test_demo_is_deterministic_with_two_clearly_different_variants():
    concise = build_backend("demo", variant="concise")
    detailed = build_backend("demo", variant="detailed")
    msgs = chat("Why do volcanoes erupt?")
    a, b = concise.generate(msgs), detailed.generate(msgs)
    assert a == concise.generate(msgs) and b == detailed.generate(msgs)
    assert "magma" in a.lower() and "magma" in b.lower()
    assert a.count("\n- ") >= 3 and "\n- " not in b and len(b) > 1.5 * len(a)


def test_demo_does_not_repeat_itself_and_has_a_fallback():
    demo = build_backend("demo", variant="concise")
    first = demo.generate(chat("How does sleep help memory?"))
    follow = demo.generate([*chat("How does sleep help memory?"), {"role": "assistant", "content": first},
                            *chat("Tell me more about sleep and memory")])
    assert follow != first
    assert "Quantum chromodynamics has several parts" in demo.generate(chat("what is quantum chromodynamics"))


def test_unknown_kind_is_a_backend_error():
    with pytest.raises(BackendError, match="unknown backend 'gpt'"):
        build_backend("gpt", model="x")


def test_demo_variant_is_checked():
    with pytest.raises(BackendError, match="variant must be one of"):
        build_backend("demo", variant="chatty")


@pytest.fixture
def fake_server(fake_openai):
    """A fake server answering from ``fake_server.replies`` ((status, payload) pairs, in order)."""
    replies: list = []
    srv = fake_openai(lambda body: replies.pop(0))
    srv.replies = replies
    return srv


def test_openai_backend_talks_to_a_compatible_server(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    fake_server.replies.append((200, {"choices": [{"message": {"role": "assistant", "content": " Hello there. "}}]}))
    backend = build_backend("openai", base_url=fake_server.url, model="llama-3-8b", api_key_env="FAKE_KEY",
                            max_tokens=64, system="Be brief.")
    assert backend.generate(chat("Hi")) == "Hello there."
    path, auth, body = fake_server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "llama-3-8b" and body["max_tokens"] == 64
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_openai_backend_takes_the_key_as_a_plain_argument(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-from-env")
    fake_server.replies.append((200, {"choices": [{"message": {"content": "ok"}}]}))
    backend = build_backend("openai", base_url=fake_server.url, model="m", api_key="sk-plain", api_key_env="FAKE_KEY")
    assert backend.generate(chat("Hi")) == "ok"
    assert fake_server.requests[0][1] == "Bearer sk-plain"  # the plain argument wins over the variable
    assert "sk-plain" not in repr(backend)


@pytest.mark.parametrize("reply, message", [
    ((500, {"error": "overloaded"}), "HTTP 500"),
    ((200, b"<html>"), "not JSON"),
    ((200, {"choices": []}), "no choices"),
    ((200, {"choices": [{"message": {"content": "  "}}]}), "empty reply"),
])
def test_openai_backend_errors_are_backend_errors(fake_server, reply, message):
    fake_server.replies.append(reply)
    backend = build_backend("openai", base_url=fake_server.url, model="x")
    with pytest.raises(BackendError, match=message):
        backend.generate(chat("Hi"))


def test_openai_backend_unreachable_server():
    backend = build_backend("openai", base_url="http://127.0.0.1:9/v1", model="x", timeout=2)
    with pytest.raises(BackendError, match="127.0.0.1:9"):
        backend.generate(chat("Hi"))


def test_hf_backend_missing_model_folder(tmp_path):
    backend = build_backend("hf", path=str(tmp_path / "nope"))
    with pytest.raises(BackendError, match="model folder not found"):
        backend.generate(chat("Hi"))


@pytest.mark.slow
def test_hf_backend_and_generate_chat_share_one_fallback_template(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    torch = pytest.importorskip("torch")
    from gazepref.llm.hf import FALLBACK_CHAT_TEMPLATE, ensure_chat_template, generate_chat

    words = ["[UNK]", "[PAD]", "User", "Assistant", ":", "hi", "hello", "there"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                eos_token="[PAD]")
    fast.save_pretrained(tmp_path)
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                  bos_token_id=1, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path)

    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert ensure_chat_template(tok) and tok.chat_template == FALLBACK_CHAT_TEMPLATE
    assert not ensure_chat_template(tok)  # has one now: kept
    prompt = tok.apply_chat_template([*chat("hi"), {"role": "assistant", "content": "hello"}, *chat("there")],
                                     tokenize=False, add_generation_prompt=True)
    assert prompt == "User: hi\nAssistant: hello[PAD]\nUser: there\nAssistant:"
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    expected = generate_chat(model, tok, [chat("hi")], max_new_tokens=4)
    assert len(expected) == 1 and set(expected[0].split()) <= set(words)

    backend = build_backend("hf", path=str(tmp_path), max_new_tokens=4)
    try:
        text = backend.generate(chat("hi"))
    except BackendError as e:  # a random tiny model may emit only padding
        assert "produced no text" in str(e) and expected[0] == ""
    else:
        assert text == expected[0]  # the backend generates through the same helper and template
