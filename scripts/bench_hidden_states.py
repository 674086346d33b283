"""Benchmark: hidden states of every layer, mlbuild's ``HiddenStates`` vs a plain causal-LM forward.

    python scripts/bench_hidden_states.py --n 48 --batch-size 16 --out /tmp/bench_hidden.json

Baseline (what one writes first): ``AutoModelForCausalLM`` + ``output_hidden_states=True``, batches in
input order, then the same mean pooling (BOS dropped, padding masked). Ours: the base model without the
LM head, batches sorted by length, no KV cache (``HiddenStates.compute``, no vector cache). Both load the
same weights in the same precision; load time is left out of both. Rounds alternate (baseline, ours,
baseline, ours...) so load from other processes on a shared CPU hits both alike; the report gives every
round and the ratio of the medians. It also checks that both give the same vectors, and times a rerun
through the per-sentence vector cache.

``--bf16`` also times ours with bfloat16 weights (useful on a CPU with AVX512-BF16; the vectors then
differ slightly from float32, reported as the lowest cosine to the baseline's).

Sentences: WMT17 news (``newstest2017.en-de.ref.de``), every k-th line so lengths vary.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from mlbuild.models.hidden import HiddenStates
from mlbuild.models.resolve import resolve_model
from mlbuild.pipeline.cache import CallCache

NEWS = "/work/shared/data/sacrebleu_wmt17_en_de/newstest2017.en-de.ref.de.gz"


def news_sentences(n: int, path: str = NEWS) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [x.strip() for x in f if x.strip()]
    step = max(1, len(lines) // n)
    return lines[::step][:n]


def plain_forward(model, tok, texts: list[str], batch_size: int) -> np.ndarray:
    """The baseline: causal LM with its head, input order, mean pooling over non-special tokens."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt", return_special_tokens_mask=True)
        use = (enc["attention_mask"].bool() & ~enc.pop("special_tokens_mask").bool()).float()
        with torch.no_grad():
            res = model(**enc, output_hidden_states=True)
        hs = torch.stack(res.hidden_states[1:], dim=1)  # (batch, layers, tokens, dim)
        pooled = (hs * use[:, None, :, None]).sum(2) / use.sum(1)[:, None, None]
        out.append(pooled.float().numpy())
    return np.concatenate(out)


def time_rounds(lm, tok, ours, ours16, texts: list[str], batch_size: int, rounds: int) -> dict:
    """Alternating rounds (bf16, plain, ours): the seconds of each and the last round's vectors."""
    out = {"plain_s": [], "ours_s": [], "bf16_s": [], "plain": None, "ours": None, "bf16": None}
    for r in range(rounds):
        if ours16 is not None:
            t0 = time.perf_counter()
            out["bf16"] = ours16.compute(texts, ["mean"])["mean"]
            out["bf16_s"].append(time.perf_counter() - t0)
            print(f"round {r + 1}: ours bf16 {out['bf16_s'][-1]:.1f}s", flush=True)
        t0 = time.perf_counter()
        out["plain"] = plain_forward(lm, tok, texts, batch_size)
        out["plain_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out["ours"] = ours.compute(texts, ["mean"])["mean"]
        out["ours_s"].append(time.perf_counter() - t0)
        print(f"round {r + 1}: plain {out['plain_s'][-1]:.1f}s, ours {out['ours_s'][-1]:.1f}s", flush=True)
    return out


def cached_rerun(ours, texts: list[str]) -> float:
    """Seconds of a second ``encode`` through a fresh vector cache (every vector from the cache)."""
    with tempfile.TemporaryDirectory() as d:
        cache = CallCache(Path(d) / "c.sqlite")
        ours.encode(texts, ["mean"], cache=cache)
        t0 = time.perf_counter()
        ours.encode(texts, ["mean"], cache=cache)
        cached_s = time.perf_counter() - t0
        cache.close()
    return cached_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--bf16", action="store_true", help="also time ours with bfloat16 weights (CPU with AVX512-BF16)")
    ap.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = news_sentences(args.n)
    ref = resolve_model(args.model)
    t0 = time.perf_counter()
    ours = HiddenStates(args.model, device="cpu", batch_size=args.batch_size)
    load_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(ref.path)
    tok.padding_side = "right"
    lm = transformers.AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32).eval()
    load_plain = time.perf_counter() - t0
    ntok = sum(len(x) for x in tok(texts)["input_ids"])
    print(
        f"{len(texts)} news sentences, {ntok} tokens; batch {args.batch_size}; torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )

    ours16 = (
        HiddenStates(args.model, device="cpu", batch_size=args.batch_size, dtype="bfloat16") if args.bf16 else None
    )
    t = time_rounds(lm, tok, ours, ours16, texts, args.batch_size, args.rounds)
    plain_s, ours_s, bf16_s = t["plain_s"], t["ours_s"], t["bf16_s"]
    vec_plain, vec_ours, vec16 = t["plain"], t["ours"], t["bf16"]
    rel = float(np.max(np.abs(vec_plain - vec_ours)) / np.max(np.abs(vec_plain)))
    cos = (vec_plain * vec_ours).sum(-1) / (np.linalg.norm(vec_plain, axis=-1) * np.linalg.norm(vec_ours, axis=-1))
    cached_s = cached_rerun(ours, texts)

    mp, mo = statistics.median(plain_s), statistics.median(ours_s)
    res = {
        "model": args.model,
        "revision": ref.revision,
        "sentences": len(texts),
        "tokens": ntok,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "plain_s": [round(x, 2) for x in plain_s],
        "ours_s": [round(x, 2) for x in ours_s],
        "plain_s_per_sentence": round(mp / len(texts), 4),
        "ours_s_per_sentence": round(mo / len(texts), 4),
        "speedup": round(mp / mo, 2),
        "cached_rerun_s": round(cached_s, 3),
        "load_s": {"plain": round(load_plain, 1), "ours": round(load_ours, 1)},
        "max_rel_diff": rel,
        "min_cosine_plain_vs_ours": float(cos.min()),
        "note": "2-core CPU shared with other processes; ratio of medians of alternating rounds",
    }
    if bf16_s:
        c16 = (vec_plain * vec16).sum(-1) / (np.linalg.norm(vec_plain, axis=-1) * np.linalg.norm(vec16, axis=-1))
        res.update(
            {
                "ours_bf16_s": [round(x, 2) for x in bf16_s],
                "speedup_bf16": round(mp / statistics.median(bf16_s), 2),
                "min_cosine_plain_vs_ours_bf16": float(c16.min()),
            }
        )
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
