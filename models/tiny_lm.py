"""Tiny causal LMs built from a config, with a word-level tokenizer built from the data.

``gazepref align --tiny`` and the tests use them to run the whole pipeline on a CPU with nothing
downloaded: :func:`build_tiny_model` writes a Hugging Face model folder (``config.json``,
weights, ``tokenizer.json`` with a chat template) that every other step loads like any local
checkpoint (``AutoModelForCausalLM.from_pretrained(path)``).

The tokenizer is a ``tokenizers`` WordLevel model over the words (and punctuation marks) of the
given texts, with a few special tokens and a plain chat template::

    <|user|> hello <|end|> <|assistant|> hi there <|end|>

``<|end|>`` is the EOS token, so generation stops at the end of an assistant message, and a prompt
rendered with ``add_generation_prompt=True`` is always a token prefix of prompt + completion (what
TRL's DPO/KTO tokenisation expects).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass
class TinyModelConfig:
    """Shape of the tiny model. ``arch``: ``llama`` or ``gpt2``. The defaults make a ~0.2M-parameter
    model plus embeddings that trains at many steps per second on a CPU; larger values (e.g.
    ``hidden_size=1024, layers=12``) give a ~100-300M model for checking the CUDA path."""

    arch: str = "llama"
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 1024
    vocab_size: int = 4000  # at most this many words (plus special tokens)
    lowercase: bool = True
    seed: int = 0


def words(text: str, lowercase: bool = True) -> list[str]:
    return _WORD.findall(text.lower() if lowercase else text)


def build_tokenizer(texts: Iterable[str], max_words: int = 4000, lowercase: bool = True):
    """A ``PreTrainedTokenizerFast`` over the ``max_words`` most frequent words of ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(words(t, lowercase))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= max_words + len(SPECIAL_TOKENS):
            break
        if w not in vocab:
            vocab[w] = len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norm)
    # Special tokens are matched before pre-tokenisation; the rest splits into words and marks.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex(_WORD.pattern), behavior="isolated")])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<|end|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # generation pads on the left; TRL's collators pad themselves
    return fast


def build_tiny_model(out: str | Path, texts: Iterable[str], config: TinyModelConfig | None = None,
                     dtype: str = "float32") -> Path:
    """Write a randomly initialised tiny causal LM and its tokenizer to ``out``; return ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    cfg = config or TinyModelConfig()
    tok = build_tokenizer(texts, cfg.vocab_size, cfg.lowercase)
    n_vocab = len(tok)
    common = dict(vocab_size=n_vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    if cfg.arch == "llama":
        mcfg = LlamaConfig(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                           num_key_value_heads=cfg.heads, intermediate_size=cfg.intermediate_size,
                           max_position_embeddings=cfg.max_positions, tie_word_embeddings=True, **common)
    elif cfg.arch == "gpt2":
        mcfg = GPT2Config(n_embd=cfg.hidden_size, n_layer=cfg.layers, n_head=cfg.heads,
                          n_inner=cfg.intermediate_size, n_positions=cfg.max_positions, **common)
    else:
        from .. import UserError

        raise UserError(f"tiny model: unknown arch {cfg.arch!r} (llama or gpt2)")
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(mcfg, dtype=getattr(torch, dtype))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "gazepref_tiny.json").write_text(json.dumps(asdict(cfg), indent=2))
    return out


def count_parameters(path: str | Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())
