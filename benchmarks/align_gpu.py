"""Run ``gazepref align`` with a larger model built from config and print its figures.

    python benchmarks/align_gpu.py DATA OUT [--hidden 1024 --layers 12 --steps 60 --batch-size 8 ...]

DATA is an IFLLM-layout folder (only the query table is needed for human labels). The model is a
Llama config built from scratch (random weights, word-level tokenizer over the data), so nothing
downloads: the point is the CUDA path — bf16, batch sizes, steps/s, peak memory — not quality.
Prints one JSON object: parameters, per-run train figures and win rates.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--runs", default="dpo-sigmoid,dpo-robust-lora,kto")
    ap.add_argument("--max-prompts", type=int, default=32)
    args = ap.parse_args(argv)

    import torch

    from gazepref.models.align import run
    from gazepref.models.align_config import AlignConfig
    from gazepref.models.tiny_lm import count_parameters

    figures: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "runs": {}}
    for name in args.runs.split(","):
        cfg = AlignConfig()
        m, t, d, e = cfg.model, cfg.train, cfg.data, cfg.eval
        m.tiny, m.tiny_hidden_size, m.tiny_layers, m.tiny_heads = True, args.hidden, args.layers, args.heads
        m.tiny_intermediate_size, m.tiny_vocab_size = args.intermediate, args.vocab
        m.attn_implementation = "sdpa"
        d.context_messages, d.test_fraction = 4, 0.2
        t.steps, t.batch_size, t.max_length, t.learning_rate = args.steps, args.batch_size, args.max_length, 1e-4
        t.bf16, t.logging_steps, t.save_steps, t.warmup_ratio = torch.cuda.is_available(), 5, 10_000, 0.05
        e.max_prompts, e.max_new_tokens, e.batch_size = args.max_prompts, 64, 32
        if name.startswith("kto"):
            t.algorithm = "kto"
        elif "robust" in name:
            t.loss = "robust"
        elif "sft" in name:
            t.loss = "sigmoid+sft"
        if "gc" in name:
            t.gradient_checkpointing = True
        if "lora" in name:
            m.lora_r, t.learning_rate = 16, 5e-4
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        rep = run(args.data, f"{args.out}/{name}", cfg, progress=True)
        tr = rep["steps"]["train"]["result"]
        ev = rep["steps"]["eval"]["result"]
        figures["runs"][name] = {
            "wall_s": round(time.perf_counter() - t0, 2),
            "pairs": rep["steps"]["pairs"]["result"]["counts"],
            **{k: tr.get(k) for k in ("algorithm", "loss_type", "label_smoothing", "steps", "steps_per_s",
                                      "samples_per_s", "train_runtime_s", "bf16", "lora",
                                      "cuda_max_memory_allocated_gib", "margin_first", "margin_last")},
            "win_rate": ev.get("win_rate"), "eval_prompts": ev.get("prompts"), "generation_s": ev.get("generation_s"),
        }
        if "parameters" not in figures:
            figures["parameters"] = count_parameters(f"{args.out}/{name}/train/tiny_model")
        print(json.dumps({name: figures["runs"][name]}), file=sys.stderr)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
