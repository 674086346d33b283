"""Evaluate word alignment and alignment-based span projection against XL-WA's hand-made en-xx alignments.

For each language pair: AER (and precision/recall) of eflomal (grow-diag-final-and; it aligns the pair's
dev+test sentences together, plus optional Tatoeba pairs as extra unlabelled text) and of the SimAlign-style
embedding aligner over a transformers model's hidden states (argmax and itermax; the layer is picked on
the dev split, reported on test).

Projection F1: XL-WA has no span annotations, so gold target spans are derived from the gold alignment:
(a) ``names``: maximal runs of capitalized source tokens that are not sentence-initial (entity-like);
(b) ``phrases``: every source 1-3-gram without punctuation whose gold projection is a contiguous, consistent
target phrase (no target word inside aligned outside the source span). A predicted projection
(:func:`mlbuild.models.align.project_span` over the predicted links) counts when its character offsets
equal the gold ones exactly.

    python scripts/eval_projection.py --langs pt,es --encoder gemma-3-270m --out reports/eval_projection.json

Data: ``../shared/data/xl_wa`` beside the project (CC BY-NC-SA 4.0, research only; never copied in).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlbuild.metrics.projection import aer, alignment_prf, span_prf  # noqa: E402
from mlbuild.models.align import EflomalAligner, EmbeddingAligner, project_span  # noqa: E402
from mlbuild.spans import Span, join_tokens  # noqa: E402

TATOEBA = {
    "pt": "por",
    "es": "spa",
    "it": "ita",
    "nl": "nld",
    "da": "dan",
    "bg": "bul",
    "et": "est",
    "hu": "hun",
    "ru": "rus",
    "sl": "slv",
}


def read_xlwa(path: Path) -> list[tuple[list[str], list[str], set[tuple[int, int]]]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        links = {tuple(map(int, x.split("-"))) for x in cols[2].split()}
        out.append((cols[0].split(), cols[1].split(), links))
    return out


def gold_spans(
    src: list[str], tgt: list[str], links: set[tuple[int, int]], kind: str
) -> list[tuple[int, int, int, int]]:
    """(src_tok_start, src_tok_end, tgt_tok_start, tgt_tok_end), inclusive, for spans with a consistent gold
    projection."""
    cands = []
    if kind == "names":
        i = 1
        while i < len(src):
            if src[i][:1].isupper():
                j = i
                while j + 1 < len(src) and src[j + 1][:1].isupper():
                    j += 1
                cands.append((i, j))
                i = j + 1
            else:
                i += 1
    else:
        for n in (1, 2, 3):
            for i in range(len(src) - n + 1):
                if all(any(ch.isalnum() for ch in w) for w in src[i : i + n]):
                    cands.append((i, i + n - 1))
    out = []
    for a, b in cands:
        tj = sorted({j for i, j in links if a <= i <= b})
        if not tj:
            continue
        lo, hi = tj[0], tj[-1]
        if any(lo <= j <= hi and not a <= i <= b for i, j in links):
            continue  # inconsistent: a target word inside is aligned outside the source span
        out.append((a, b, lo, hi))
    return out


def projection_f1(data, pred_links, kind: str) -> dict[str, float]:
    preds, golds = [], []
    for (src, tgt, links), pl in zip(data, pred_links):
        s_text, s_offs = join_tokens(src)
        t_text, t_offs = join_tokens(tgt)
        p, g = [], []
        for k, (a, b, lo, hi) in enumerate(gold_spans(src, tgt, links, kind)):
            g.append(Span(t_offs[lo][0], t_offs[hi][1], str(k)))
            span, _, _ = project_span(s_offs, t_offs, pl, s_offs[a][0], s_offs[b][1])
            if span is not None:
                p.append(Span(span[0], span[1], str(k)))
        preds.append(p)
        golds.append(g)
    r = span_prf(preds, golds)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}


def scores(data, pred) -> dict[str, float]:
    gold = [x[2] for x in data]
    r = {"aer": round(aer(pred, gold), 4), **{k: round(v, 4) for k, v in alignment_prf(pred, gold).items()}}
    r["names_f1"] = projection_f1(data, pred, "names")
    r["phrases_f1"] = projection_f1(data, pred, "phrases")
    return r


def tatoeba_pairs(lang: str, data_root: Path, limit: int) -> tuple[list[list[str]], list[list[str]]]:
    from mlbuild.spans import tokenize

    code = TATOEBA.get(lang)
    base = data_root / "tatoeba_laser" / f"tatoeba.{code}-eng"
    if not code or not Path(f"{base}.eng").exists():
        return [], []
    en = Path(f"{base}.eng").read_text(encoding="utf-8").splitlines()[:limit]
    xx = Path(f"{base}.{code}").read_text(encoding="utf-8").splitlines()[:limit]
    tok = lambda s: [s[a:b] for a, b in tokenize(s)]  # noqa: E731
    return [tok(s) for s in en], [tok(s) for s in xx]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding xl_wa/")
    ap.add_argument("--langs", default="pt,es,it", help="comma-separated XL-WA languages, or 'all'")
    ap.add_argument(
        "--encoder",
        default="gemma-3-270m",
        help="transformers model for the embedding aligner (path, packaged name or Hub id); 'none' to skip",
    )
    ap.add_argument("--layers", default="3,6,9,12", help="layers tried on dev (the best is used on test)")
    ap.add_argument("--center", action="store_true", help="centre hidden states (decoder LMs)")
    ap.add_argument("--tatoeba", type=int, default=1000, help="extra Tatoeba pairs for eflomal (0 = none)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    data_root = Path(args.data)
    xlwa = data_root / "xl_wa"
    if not xlwa.exists():
        print(f"XL-WA not found at {xlwa}", file=sys.stderr)
        return 2
    langs = sorted(p.name for p in xlwa.iterdir() if p.is_dir()) if args.langs == "all" else args.langs.split(",")
    results: dict = {"encoder": args.encoder, "center": args.center, "languages": {}}
    aligner = None
    if args.encoder != "none":
        t0 = time.perf_counter()
        aligner = EmbeddingAligner(args.encoder, layer=0, method="itermax", device="auto", center=args.center)
        results["encoder_revision"] = aligner.revision
        results["encoder_load_seconds"] = round(time.perf_counter() - t0, 1)
    for lang in langs:
        dev = read_xlwa(xlwa / lang / "dev.tsv")
        test = read_xlwa(xlwa / lang / "test.tsv")
        res: dict = {"dev_sentences": len(dev), "test_sentences": len(test)}
        # eflomal: unsupervised, sees dev+test (+ Tatoeba) text, no gold links
        ex_s, ex_t = tatoeba_pairs(lang, data_root, args.tatoeba) if args.tatoeba else ([], [])
        t0 = time.perf_counter()
        ef = EflomalAligner(extra_src=ex_s, extra_tgt=ex_t)
        both = dev + test
        links = ef.align([x[0] for x in both], [x[1] for x in both])
        res["eflomal"] = {
            **scores(test, links[len(dev) :]),
            "extra_pairs": len(ex_s),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"{lang}: eflomal AER {res['eflomal']['aer']:.3f} ({res['eflomal']['seconds']}s)", flush=True)
        if aligner is not None:
            layers = [int(x) for x in args.layers.split(",")]
            t0 = time.perf_counter()
            dev_links = aligner.align_many([x[0] for x in dev], [x[1] for x in dev], layers, ["itermax"])
            sweep = {layer: round(aer(dev_links[(layer, "itermax")], [x[2] for x in dev]), 4) for layer in layers}
            best = min(sweep, key=sweep.get)
            res["embedding_dev_aer_by_layer"] = sweep
            res["embedding_dev_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{lang}: {args.encoder} dev AER by layer (itermax) {sweep}", flush=True)
            t0 = time.perf_counter()
            test_links = aligner.align_many([x[0] for x in test], [x[1] for x in test], [best], ["argmax", "itermax"])
            secs = round(time.perf_counter() - t0, 1)
            for method in ("argmax", "itermax"):
                res[f"embedding_{method}"] = {
                    **scores(test, test_links[(best, method)]),
                    "layer": best,
                    "seconds": secs,
                }
        results["languages"][lang] = res
        line = (
            f"{lang}: eflomal AER {res['eflomal']['aer']:.3f} (names F1 {res['eflomal']['names_f1']['f1']:.3f}, "
            f"phrases F1 {res['eflomal']['phrases_f1']['f1']:.3f})"
        )
        for method in ("argmax", "itermax"):
            if f"embedding_{method}" in res:
                e = res[f"embedding_{method}"]
                line += (
                    f"; {args.encoder} L{e['layer']} {method} AER {e['aer']:.3f} (names F1 "
                    f"{e['names_f1']['f1']:.3f}, phrases F1 {e['phrases_f1']['f1']:.3f})"
                )
        print(line, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
