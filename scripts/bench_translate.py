"""Benchmark: mlbuild's ``translate.v1`` step against a plain loop over ``transformers.pipeline("translation")``.

(transformers 5 removed the ``translation`` pipeline; with transformers >= 5 the baseline loop runs the
same three things that pipeline ran per call: tokenize, ``generate``, decode with ``skip_special_tokens``.)

Both translate the same inputs with the same tiny random-weight Marian model, built here in a temp
folder (a word-level tokenizer trained on the fly; no download), with greedy decoding and the same
``max_new_tokens``. The inputs mix lengths (4-60 words) and repeat a share of texts (``--dup``), as
passages with boilerplate do. mlbuild wins by de-duplication and length-bucketed batching; the
script also times the pipeline given the whole list with ``batch_size`` (batched, not bucketed), and a
rerun of the recipe (everything comes from the model-call cache).

It checks that the outputs are the same text for text, and prints one JSON object. Times include
loading the model on both sides. On CUDA both sides run in the same half precision.

``--mode engines`` (also part of ``all``) compares the MT engines on the same model through the library's
own backends (``load_mt``): the ``transformers`` engine (torch, ``--threads`` threads, float32 on CPU)
against the ``ctranslate2`` engine (converted once, ``--threads`` intra-op threads, ``--compute-type``:
int8 on CPU by default), greedy, same ``max_new_tokens``, alternating rounds; it reports output tokens/s
of both and the median ratio, whether ctranslate2 with float32 gives the same text for every input, and
corpus chrF (sacrebleu) of the int8 outputs against the transformers outputs. The model is random (no
real OPUS-MT checkpoint is reachable offline): a Marian laid out as OPUS-MT checkpoints are (pad token
last), ``--init-std`` large enough that outputs depend on the input.

    python scripts/bench_translate.py                      # CPU defaults (a few minutes on 2 shared cores)
    python scripts/bench_translate.py --device cuda --n 4000 --d-model 512 --layers 6 --skip-loop
    python scripts/bench_translate.py --mode engines --d-model 512 --layers 6 --threads 2 --n 160
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_model(
    out: Path, vocab: list[str], d_model: int, layers: int, seed: int, eos_bias: float, init_std: float = 0.02
) -> Path:
    """A random Marian with OPUS-MT's vocabulary layout (``</s>`` 0, ``<unk>`` 1, ``<pad>`` last = decoder start),
    which both engines load (CTranslate2's converter expects the pad token last)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    words = ["</s>", "<unk>", *vocab, "<pad>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 0)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(out)
    torch.manual_seed(seed)
    v = len(words)
    cfg = MarianConfig(
        vocab_size=v,
        decoder_vocab_size=v,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=max(2, d_model // 64),
        decoder_attention_heads=max(2, d_model // 64),
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        max_position_embeddings=512,
        pad_token_id=v - 1,
        eos_token_id=0,
        decoder_start_token_id=v - 1,
        forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True,
        init_std=init_std,
    )
    model = MarianMTModel(cfg)
    with torch.no_grad():  # random weights never stop; an EOS bias gives varied output lengths
        model.final_logits_bias[0, 0] = eos_bias
    model.generation_config.num_beams = 1
    model.generation_config.max_length = None
    model.save_pretrained(out)
    return out


def make_inputs(n: int, dup: float, vocab: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < dup:
            texts.append(rng.choice(texts))
        else:
            k = int(min(60, max(4, rng.lognormvariate(2.6, 0.6))))
            texts.append(" ".join(rng.choice(vocab) for _ in range(k)))
    return texts


RECIPE = """
[dataset]
name = "bench-translate"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "{src}"
id_column = "id"

[[steps]]
uses = "translate.v1"
columns = ["text"]
source_lang = "en"
target_langs = ["pt"]
model = "{model}"
segment = "none"
gates = []
num_beams = 1
max_new_tokens = {mnt}
batch_size = {bs}
device = "{device}"
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400, help="input texts")
    ap.add_argument("--dup", type=float, default=0.3, help="share of inputs that repeat an earlier one")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=3000)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--eos-bias",
        type=float,
        default=0.0,
        help="logit bias of EOS in the random model (0: outputs run to max-new-tokens)",
    )
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-loop", action="store_true", help="skip the per-text pipeline loop (slowest)")
    ap.add_argument("--mode", choices=("pipeline", "engines", "all"), default="all")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each engine (engines mode)")
    ap.add_argument("--compute-type", default="auto", help="ctranslate2 compute type (auto: int8 on CPU)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per engine (engines mode)")
    ap.add_argument("--init-std", type=float, default=0.02, help="weight init std of the random model")
    return ap.parse_args(argv)


def baseline(model_dir: Path, device: str, gen: dict):
    """The translation pipeline where it exists (transformers < 5); transformers 5 removed that task, so there
    it does what its preprocess/forward/postprocess did: tokenize, generate, decode with skip_special_tokens.
    Returns a function from a batch of texts to their translations."""
    import torch
    import transformers

    from mlbuild.models.device import torch_dtype

    dtype = torch_dtype(device)
    if int(transformers.__version__.split(".")[0]) < 5:
        pipe = transformers.pipeline(
            "translation", model=str(model_dir), tokenizer=str(model_dir), device=device, torch_dtype=dtype
        )
        return lambda batch: [r["translation_text"].strip() for r in pipe(batch, batch_size=len(batch), **gen)]
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()

    def run(batch: list[str]) -> list[str]:
        enc = tok(batch, return_tensors="pt", padding=True, truncation=True).to(device)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)]

    return run


def time_baselines(args: argparse.Namespace, model_dir: Path, device: str, texts: list[str], result: dict):
    """(per-text loop outputs or None, batched-in-input-order outputs); their times go into ``result``."""
    import transformers

    gen = {"max_new_tokens": args.max_new_tokens, "num_beams": 1, "do_sample": False}
    result["baseline"] = (
        'transformers.pipeline("translation")'
        if int(transformers.__version__.split(".")[0]) < 5
        else "tokenize + generate + decode per call (the removed translation pipeline's steps)"
    )
    loop_out = None
    if not args.skip_loop:  # baseline 1: a plain loop, one text at a time
        t0 = time.perf_counter()
        run = baseline(model_dir, device, gen)
        loop_out = [run([t])[0] for t in texts]
        result["pipeline_loop_s"] = round(time.perf_counter() - t0, 2)
    # baseline 2: batches of batch_size in input order (batched, not bucketed or de-duplicated)
    t0 = time.perf_counter()
    run = baseline(model_dir, device, gen)
    bs = args.batch_size
    batched_out = [o for i in range(0, len(texts), bs) for o in run(texts[i : i + bs])]
    result["pipeline_batched_s"] = round(time.perf_counter() - t0, 2)
    return loop_out, batched_out


def time_mlbuild(args: argparse.Namespace, tmp: Path, model_dir: Path, device: str, texts: list[str], result: dict):
    """translate.v1 through the runner (checkpoints, cache, card included), then a rerun from the call
    cache; returns the outputs in input order, or None when the step kept no rows."""
    import shutil

    import polars as pl

    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    src = tmp / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"t{i:06d}", "text": t}) for i, t in enumerate(texts)) + "\n")
    recipe = tmp / "bench.toml"
    recipe.write_text(
        RECIPE.format(src=src, model=model_dir, mnt=args.max_new_tokens, bs=args.batch_size, device=device)
    )
    t0 = time.perf_counter()
    res = Runner(load_recipe(recipe), tmp / "out", quiet=True, device=device).run()
    result["mlbuild_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    (tmp / "out" / "bench-translate").rename(tmp / "out" / "first")
    for d in (tmp / "out" / ".mlbuild" / "bench-translate" / "0.1.0").glob("01-*"):
        shutil.rmtree(d)
    Runner(load_recipe(recipe), tmp / "out", quiet=True, device=device).run()
    result["mlbuild_rerun_from_cache_s"] = round(time.perf_counter() - t0, 2)
    st = res.manifest["step_summaries"]
    result["mt_report"] = st.get("translate", st)
    files = sorted((tmp / "out" / "first").rglob("*.parquet"))
    if not files:
        return None
    table = pl.concat([pl.read_parquet(p) for p in files])
    by_id = dict(zip(table["parallel_id"].to_list(), table["text"].to_list()))
    return [by_id[f"t{i:06d}"] for i in range(len(texts))]


def compare(texts: list[str], ml_out: list[str], loop_out: list[str] | None, batched_out: list[str], result: dict):
    ref = loop_out if loop_out is not None else batched_out
    same = sum(a == b for a, b in zip(ml_out, ref))
    result["same_outputs"] = f"{same}/{len(texts)} (vs {'loop' if loop_out is not None else 'batched'} pipeline)"
    result["same_outputs_vs_batched_pipeline"] = f"{sum(a == b for a, b in zip(ml_out, batched_out))}/{len(texts)}"
    if loop_out is not None:
        result["speedup_vs_loop"] = round(result["pipeline_loop_s"] / result["mlbuild_s"], 2)
    result["speedup_vs_batched_pipeline"] = round(result["pipeline_batched_s"] / result["mlbuild_s"], 2)
    diffs = [(t, a, b) for t, a, b in zip(texts, ml_out, ref) if a != b][:3]
    result["first_differences"] = [{"input": t[:80], "mlbuild": a[:80], "pipeline": b[:80]} for t, a, b in diffs]


def time_engines(args: argparse.Namespace, tmp: Path, model_dir: Path, device: str, texts: list[str]) -> dict:
    """transformers vs ctranslate2 engines on the distinct inputs, through ``load_mt``: alternating timed rounds
    (conversion and loading excluded), output tokens/s, the median ratio; float32 identity; int8 chrF."""
    import statistics

    import torch
    from sacrebleu.metrics import CHRF

    from mlbuild.models.mt import load_mt

    os.environ["MLBUILD_CACHE"] = str(tmp / "cache")  # a fresh conversion cache
    torch.set_num_threads(args.threads)
    uniq = list(dict.fromkeys(texts))
    common = {"max_new_tokens": args.max_new_tokens, "num_beams": 1}
    hf = load_mt("transformers", str(model_dir), device=device, batch_size=args.batch_size, **common)
    t0 = time.perf_counter()
    ct = load_mt(
        "ctranslate2", str(model_dir), device=device, compute_type=args.compute_type, threads=args.threads, **common
    )
    convert_s = time.perf_counter() - t0
    exact = load_mt(
        "ctranslate2", str(model_dir), device=device, compute_type="float32", threads=args.threads, **common
    )
    out: dict = {"threads": args.threads, "compute_type": ct.compute_type, "convert_and_load_s": round(convert_s, 2)}
    for mt in (hf, ct):  # warm-up (first-call allocations, thread pools)
        mt.translate_detailed(uniq[:8], "eng_Latn", "por_Latn")
    speeds: dict[str, list[float]] = {"transformers": [], "ctranslate2": []}
    results: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, mt in (("transformers", hf), ("ctranslate2", ct)):
            t0 = time.perf_counter()
            res = mt.translate_detailed(uniq, "eng_Latn", "por_Latn")
            secs = time.perf_counter() - t0
            speeds[name].append(sum(r.tokens or 0 for r in res) / secs)
            results[name] = res
    ratios = [c / h for c, h in zip(speeds["ctranslate2"], speeds["transformers"])]
    ref = [r.text for r in results["transformers"]]
    int8 = [r.text for r in results["ctranslate2"]]
    f32 = [r.text for r in exact.translate_detailed(uniq, "eng_Latn", "por_Latn")]
    out.update(
        {
            "texts": len(uniq),
            "distinct_outputs_transformers": len(set(ref)),
            "output_tokens_transformers": sum(r.tokens or 0 for r in results["transformers"]),
            "tokens_per_s": {k: [round(x, 1) for x in v] for k, v in speeds.items()},
            "speed_ratio_ct2_over_transformers_median": round(statistics.median(ratios), 2),
            "same_text_float32": f"{sum(a == b for a, b in zip(f32, ref))}/{len(uniq)}",
            "same_text_int8": f"{sum(a == b for a, b in zip(int8, ref))}/{len(uniq)}",
            "chrf_int8_vs_transformers": round(CHRF().corpus_score(int8, [ref]).score, 2),
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch
    import transformers

    from mlbuild.models.device import resolve_device

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = resolve_device(args.device)
    rng = random.Random(args.seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(args.vocab)})
    result: dict = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": torch.get_num_threads(),
        "args": vars(args),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(
            tmp / "model", vocab, args.d_model, args.layers, args.seed, args.eos_bias, args.init_std
        )
        texts = make_inputs(args.n, args.dup, vocab, args.seed + 1)
        words = round(sum(len(t.split()) for t in texts) / len(texts), 1)
        result["inputs"] = {"texts": len(texts), "distinct": len(set(texts)), "words_mean": words}
        ml_out: list[str] | None = []
        if args.mode in ("engines", "all"):
            result["engines"] = time_engines(args, tmp, model_dir, device, texts)
        if args.mode in ("pipeline", "all"):
            loop_out, batched_out = time_baselines(args, model_dir, device, texts, result)
            ml_out = time_mlbuild(args, tmp, model_dir, device, texts, result)
            if ml_out is None:
                result["error"] = "mlbuild kept no rows (see the MT report); try another --eos-bias"
            else:
                compare(texts, ml_out, loop_out, batched_out, result)
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if ml_out is not None else 1


if __name__ == "__main__":
    sys.exit(main())
