"""``language_similarity.v1``: how close a model puts each language to a pivot (English), per layer.

For parallel sentences (the pivot's and each language's, tied by an id), it pools the hidden states of
every layer of a model (the packaged Gemma-3-270m by default; any transformers model by Hub id, path or
GGUF file) into one vector per sentence and layer, then scores each language and layer with
:mod:`mlbuild.metrics.langsim`:

- ``ranker``: mean cosine of parallel pairs (the Language Ranker score), and ``nonparallel``: the same
  for non-parallel pairs, the baseline it must beat (decoder states are anisotropic: raw cosines are
  near 1 for everything);
- ``ranker_centered`` / ``nonparallel_centered``: the same after subtracting the mean vector over all
  languages; ``margin(_centered)`` = parallel - non-parallel; ``auc(_centered)``: P(parallel cosine >
  non-parallel cosine), 0.5 = no separation;
- ``mexa`` (and ``mexa_centered``): MEXA alignment, the share of pairs whose cosine is strictly the
  largest in its row and its column.

The ``score`` of a language is one of those per-pair metrics aggregated over layers (``mean`` or
``max``), with a bootstrap confidence interval over sentences; the ranking gives each language a rank
range, so languages the bootstrap cannot tell apart share ranks. MEXA depends on the number of pairs:
languages are compared at the same ``max_sentences`` where the data allows.

Reads (long form, the default): ``id_column`` (``parallel_id``), ``text_column``, ``lang_column`` (rows
of one parallel unit share the id; one row per language). Wide form: ``columns = {eng_Latn = "passage",
por_Latn = "passage_pt"}`` (one row per unit). Pairs with an empty side, and repeated pivot or language
sentences (they would tie in MEXA), are dropped and counted.

Writes ``reports/<name>.json`` (every number, model id and revision, checksums of the sentences),
``<name>.md`` (table), ``<name>_heatmap.png`` (layers x languages), ``<name>_layers.png`` (curves over
layers) and ``<name>_separation.png`` (parallel vs non-parallel). The card shows the table.

Parameters: ``model``, ``gguf_file``, ``revision``, ``pivot``, ``langs`` (empty: every language
found), ``columns`` or ``text_column``/``lang_column``/``id_column``, ``pooling`` (list; the first one
is scored: ``mean`` drops BOS and masks padding, ``last_token``, ``weighted_mean``), ``score``,
``aggregate``, ``max_sentences``, ``min_sentences``, ``bootstrap``, ``confidence``, ``seed``,
``max_length``, ``dtype``, ``name``; runtime: ``device``, ``batch_size``.

Example (English passages and their Portuguese translations, tied by ``parallel_id``)::

    [[reports]]
    uses = "language_similarity.v1"
    text_column = "passage"
    lang_column = "lang"
    pivot = "en"
    max_sentences = 100

Standalone: ``mlbuild report language-similarity --parallel DIR_OR_DATASET --langs fr de sw --out DIR``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from .. import langs
from ..errors import InputError
from ..metrics import langsim
from ..pipeline.base import Report
from ..pipeline.params import param
from ..pipeline.registry import register

log = logging.getLogger(__name__)

SCORES = ("mexa", "mexa_centered", "ranker_centered", "ranker")
PER_LAYER = (
    "ranker",
    "nonparallel",
    "margin",
    "ranker_centered",
    "nonparallel_centered",
    "margin_centered",
    "mexa",
    "mexa_centered",
    "auc",
    "auc_centered",
)
TEXT_EXTENSIONS = (".txt", ".text", ".tok", ".detok")


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class ParallelSet:
    """Line-aligned pairs of one language with the pivot."""

    lang: str
    pivot: list[str]
    texts: list[str]
    ids: list[str]
    origin: str = ""
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _code_of(name: str) -> tuple[str, str] | None:
    """(language code, group key) from a file name: ``tatoeba.fra-eng.fra`` -> (fra_Latn,
    ``tatoeba.fra-eng.{}``); ``por_Latn.txt`` -> (por_Latn, ``{}.txt``); ``dev.pt`` -> (por_Latn, ``dev.{}``)."""
    ext = ""
    for e in TEXT_EXTENSIONS:
        if name.lower().endswith(e):
            name, ext = name[: -len(e)], e
            break
    parts = name.split(".")
    for pos in (len(parts) - 1, 0):
        if langs.is_valid(parts[pos]):
            key = parts.copy()
            key[pos] = "{}"
            return langs.normalize(parts[pos]), ".".join(key) + ext
    return None


def read_parallel_dir(path: str | Path, pivot: str, want: Sequence[str] = ()) -> dict[str, ParallelSet]:
    """Line-aligned text files, one per language, the code in the file name. Files that share a name
    apart from the code form one group (``dev.eng_Latn`` + ``dev.por_Latn``; ``tatoeba.fra-eng.fra`` +
    ``tatoeba.fra-eng.eng``); each group must hold the pivot. When a language appears in several groups,
    the first group by name is used."""
    d = Path(path)
    pivot = langs.normalize(pivot)
    want_set = {langs.normalize(c) for c in want}
    groups: dict[str, dict[str, Path]] = {}
    for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
        got = _code_of(f.name)
        if got is None:
            continue
        code, key = got
        groups.setdefault(key, {})[code] = f
    sets: dict[str, ParallelSet] = {}
    for _key, files in sorted(groups.items()):
        if pivot not in files:
            continue
        others = [c for c in files if c != pivot and (not want_set or c in want_set) and c not in sets]
        if not others:
            continue
        pv = _read_lines(files[pivot])
        for code in others:
            tx = _read_lines(files[code])
            if len(tx) != len(pv):
                raise InputError(
                    str(files[code]),
                    f"{len(tx)} lines, but the pivot file {files[pivot].name} has "
                    f"{len(pv)}; parallel files must be line-aligned",
                )
            sets[code] = ParallelSet(
                code, pv, tx, [str(i + 1) for i in range(len(tx))], origin=f"{files[pivot].name} + {files[code].name}"
            )
    if not sets:
        found = sorted({c for fs in groups.values() for c in fs})
        raise InputError(
            str(d),
            f"no line-aligned files pairing the pivot {pivot} with "
            f"{', '.join(sorted(want_set)) or 'another language'} (languages found in file "
            f"names: {', '.join(found) or 'none'})",
        )
    missing = sorted(want_set - set(sets) - {pivot})
    if missing:
        log.warning("no parallel files for %s in %s", ", ".join(missing), d)
    return sets


def _read_lines(p: Path) -> list[str]:
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(str(p), f"not UTF-8 text: {e}") from None


def read_table(path: str | Path) -> pl.DataFrame:
    """A dataset: a built mlbuild dataset folder (``data/**/*.parquet``), a folder of parquet files, or one
    ``.parquet`` / ``.jsonl`` file."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".parquet":
            return pl.read_parquet(p)
        if p.suffix in (".jsonl", ".json"):
            return pl.read_ndjson(p)
        raise InputError(str(p), "expected a .parquet or .jsonl file, or a folder")
    files = sorted((p / "data").rglob("*.parquet")) if (p / "data").is_dir() else sorted(p.rglob("*.parquet"))
    if not files:
        raise InputError(str(p), "no parquet files here (expected a dataset folder with data/**/*.parquet)")
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")


def _norm_code(v: Any) -> str | None:
    if isinstance(v, str) and langs.is_valid(v):
        return langs.normalize(v)
    return None


def sets_from_table(
    table: pl.DataFrame,
    pivot: str,
    want: Sequence[str] = (),
    *,
    columns: dict[str, str] | None = None,
    text_column: str = "text",
    lang_column: str | None = "lang",
    id_column: str = "parallel_id",
) -> dict[str, ParallelSet]:
    """Parallel sets from a table: wide (``columns`` = language -> column, one row per unit) or long (one
    row per language, tied by ``id_column``; the language in ``lang_column``, or ``<text_column>_lang``
    when that column is absent)."""
    pivot = langs.normalize(pivot)
    want_set = {langs.normalize(c) for c in want}
    if columns:
        cols = {langs.normalize(k): v for k, v in columns.items()}
        if pivot not in cols:
            raise InputError("table", f"columns has no column for the pivot {pivot}")
        for c in cols.values():
            if c not in table.columns:
                raise InputError("table", f"no column '{c}' (columns: {', '.join(table.columns)})")
        ids = (
            table[id_column].cast(pl.Utf8).to_list()
            if id_column in table.columns
            else [str(i) for i in range(table.height)]
        )
        pv = table[cols[pivot]].cast(pl.Utf8).fill_null("").to_list()
        return {
            code: ParallelSet(
                code, pv, table[c].cast(pl.Utf8).fill_null("").to_list(), ids, origin=f"columns {cols[pivot]} + {c}"
            )
            for code, c in cols.items()
            if code != pivot and (not want_set or code in want_set)
        }
    lc = lang_column if lang_column and lang_column in table.columns else f"{text_column}_lang"
    for c in (id_column, text_column, lc):
        if c not in table.columns:
            raise InputError(
                "table",
                f"no column '{c}' (columns: {', '.join(table.columns)}); the long form needs "
                "id_column, text_column and lang_column (or use columns = {lang = column})",
            )
    df = table.select(
        pl.col(id_column).cast(pl.Utf8).alias("id"),
        pl.col(text_column).cast(pl.Utf8).alias("text"),
        pl.col(lc).map_elements(_norm_code, return_dtype=pl.Utf8).alias("lang"),
    )
    df = df.filter(pl.col("id").is_not_null() & pl.col("lang").is_not_null()).unique(
        ["id", "lang"], keep="first", maintain_order=True
    )
    piv = df.filter(pl.col("lang") == pivot).select("id", pl.col("text").alias("pivot"))
    sets: dict[str, ParallelSet] = {}
    for code in sorted(set(df["lang"].unique().to_list()) - {pivot}):
        if want_set and code not in want_set:
            continue
        j = df.filter(pl.col("lang") == code).join(piv, on="id", how="inner", maintain_order="left").sort("id")
        if j.height:
            sets[code] = ParallelSet(
                code,
                j["pivot"].fill_null("").to_list(),
                j["text"].fill_null("").to_list(),
                j["id"].to_list(),
                origin=f"{text_column} by {id_column}",
            )
    return sets


def prepare(
    sets: dict[str, ParallelSet], max_sentences: int, min_sentences: int, seed: int = 0
) -> tuple[dict[str, ParallelSet], dict[str, str]]:
    """Drop pairs with an empty side and repeated sentences (they tie in MEXA), keep at most
    ``max_sentences`` pairs per language (a seeded choice by id, the same ids for every language that
    shares them), and skip languages left with fewer than ``min_sentences``. Returns (sets, skipped)."""
    out: dict[str, ParallelSet] = {}
    skipped: dict[str, str] = {}
    for code, s in sets.items():
        dropped = {"empty": 0, "duplicate": 0, "over_max": 0}
        seen_p: set[str] = set()
        seen_t: set[str] = set()
        keep: list[int] = []
        for i, (p, t) in enumerate(zip(s.pivot, s.texts)):
            p, t = p.strip(), t.strip()
            if not p or not t:
                dropped["empty"] += 1
            elif p in seen_p or t in seen_t:
                dropped["duplicate"] += 1
            else:
                seen_p.add(p)
                seen_t.add(t)
                keep.append(i)
        if len(keep) > max_sentences:
            order = {i: hashlib.sha256(f"{seed}\x1f{s.ids[i]}".encode()).hexdigest() for i in keep}
            chosen = set(sorted(keep, key=order.__getitem__)[:max_sentences])
            dropped["over_max"] = len(keep) - max_sentences
            keep = [i for i in keep if i in chosen]
        if len(keep) < min_sentences:
            skipped[code] = f"{len(keep)} usable pairs < min_sentences={min_sentences}"
            continue
        out[code] = ParallelSet(
            code,
            [s.pivot[i].strip() for i in keep],
            [s.texts[i].strip() for i in keep],
            [s.ids[i] for i in keep],
            s.origin,
            {k: v for k, v in dropped.items() if v},
        )
    return out, skipped


def checksum(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------- scores


def _r(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def score_languages(
    vectors: dict[str, np.ndarray],
    sets: dict[str, ParallelSet],
    pivot: str,
    *,
    score: str = "mexa",
    aggregate: str = "mean",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number for one pooling. ``vectors`` maps each distinct text to its (layers, dim) array."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
    codes = sorted(sets)
    pivot_texts = list(dict.fromkeys(t for c in codes for t in sets[c].pivot))
    groups = [np.stack([vectors[t] for t in pivot_texts])] + [
        np.stack([vectors[t] for t in sets[c].texts]) for c in codes
    ]
    n_layers = groups[0].shape[1]
    mus = [langsim.centering_mean([g[:, layer] for g in groups]) for layer in range(n_layers)]
    shared = len({tuple(sets[c].pivot) for c in codes}) == 1  # same pivot sentences: paired bootstrap
    out: dict[str, Any] = {}
    draws: dict[str, np.ndarray] = {}
    for k, code in enumerate(codes):
        s = sets[code]
        P = np.stack([vectors[t] for t in s.pivot])
        X = np.stack([vectors[t] for t in s.texts])
        per_layer: dict[str, list[float]] = {m: [] for m in PER_LAYER}
        per_pair = np.zeros((len(s), n_layers))
        for layer in range(n_layers):
            sc = langsim.layer_scores(P[:, layer], X[:, layer], mus[layer])
            for m in PER_LAYER:
                per_layer[m].append(sc[m])
            per_pair[:, layer] = sc["per_pair"][score]
        idx = langsim.bootstrap_indices(len(s), bootstrap, seed if shared else seed + 1000003 * (k + 1))
        layer_draws = np.stack([langsim.bootstrap_means(per_pair[:, layer], idx) for layer in range(n_layers)], axis=1)
        d = layer_draws.mean(axis=1) if aggregate == "mean" else layer_draws.max(axis=1)
        draws[code] = d
        agg = {
            m: {k2: (_r(v) if k2 != "argmax" else v) for k2, v in langsim.aggregate(per_layer[m]).items()}
            for m in PER_LAYER
        }
        value = agg[score][aggregate]
        lo, hi = langsim.percentile_ci(d, confidence)
        out[code] = {
            "name": langs.display_name(code),
            "n": len(s),
            "source": s.origin,
            "dropped": s.dropped,
            "checksums": {"pivot": checksum(s.pivot), "lang": checksum(s.texts)},
            **{m: [_r(v) for v in per_layer[m]] for m in PER_LAYER},
            "aggregate": agg,
            "score": value,
            "ci": [_r(lo), _r(hi)],
        }
    ranked = (
        langsim.rank_languages({c: out[c]["score"] for c in codes}, draws, confidence)
        if codes
        else {"ranking": [], "rank_range": {}, "indistinguishable": {}}
    )
    for i, c in enumerate(ranked["ranking"]):
        out[c]["rank"] = i + 1
        out[c]["rank_range"] = ranked["rank_range"][c]
        out[c]["indistinguishable_from"] = ranked["indistinguishable"][c]
    return {"languages": out, "ranking": ranked["ranking"], "paired_bootstrap": shared, "layers": n_layers}


def build_report(
    sets: dict[str, ParallelSet],
    encoder: Any,
    *,
    pivot: str,
    poolings: Sequence[str] = ("mean",),
    score: str = "mexa",
    aggregate: str = "mean",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cache: Any = None,
    quiet: bool = True,
    skipped: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode every distinct sentence once (per-sentence cache) and score every pooling. ``encoder`` is a
    :class:`~mlbuild.models.hidden.HiddenStates` (or anything with ``encode`` and ``info``)."""
    import time

    pivot = langs.normalize(pivot)
    texts = list(dict.fromkeys(t for s in sets.values() for t in (*s.pivot, *s.texts)))
    t0 = time.perf_counter()
    enc = encoder.encode(texts, list(poolings), cache=cache, quiet=quiet) if texts else {}
    seconds = time.perf_counter() - t0
    info = encoder.info()
    by_pooling = {}
    for p in poolings:
        vecs = {t: enc[p][i] for i, t in enumerate(texts)}
        by_pooling[p] = (
            score_languages(
                vecs,
                sets,
                pivot,
                score=score,
                aggregate=aggregate,
                bootstrap=bootstrap,
                confidence=confidence,
                seed=seed,
            )
            if sets
            else {"languages": {}, "ranking": [], "paired_bootstrap": False, "layers": info.get("layers", 0)}
        )
    main = by_pooling[poolings[0]]
    n_layers = main["layers"]
    return {
        "report": "language_similarity.v1",
        "model": info["id"],
        "revision": info["revision"],
        "model_info": info,
        "pivot": pivot,
        "pooling": poolings[0],
        "score": {
            "metric": score,
            "aggregate": aggregate,
            "over": "layers",
            "bootstrap": bootstrap,
            "confidence": confidence,
            "seed": seed,
            "paired_bootstrap": main["paired_bootstrap"],
        },
        "layers": list(range(1, n_layers + 1)),
        "languages": main["languages"],
        "ranking": main["ranking"],
        "skipped": dict(skipped or {}),
        "other_poolings": {
            p: {"languages": by_pooling[p]["languages"], "ranking": by_pooling[p]["ranking"]} for p in poolings[1:]
        },
        "sentences": {
            "distinct": len(texts),
            "encoded": getattr(encoder, "computed", None),
            "from_cache": getattr(encoder, "cached", None),
            "seconds": round(seconds, 3),
        },
        **(extra or {}),
    }


# ---------------------------------------------------------------------------------------------- outputs


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def markdown(result: dict[str, Any], prefix: str = "language_similarity", link_dir: str = "") -> str:
    """The table of languages, best first, with the separation check and links to the plots."""
    sc = result["score"]
    L = result["languages"]
    lines = [
        f"Model `{result['model']}` (`{result['revision']}`), pivot `{result['pivot']}`, pooling "
        f"`{result['pooling']}`, {len(result['layers'])} layers. Score = `{sc['metric']}` ({sc['aggregate']} "
        f"over layers) with a {round(sc['confidence'] * 100)}% bootstrap interval over sentences "
        f"({sc['bootstrap']} resamples{', paired: same pivot sentences' if sc['paired_bootstrap'] else ''}).",
        "",
    ]
    if not L:
        lines.append(
            "No language had enough parallel pairs with the pivot"
            + (
                f" (skipped: {', '.join(f'{c}: {r}' for c, r in result['skipped'].items())})."
                if result["skipped"]
                else "."
            )
        )
        return "\n".join(lines) + "\n"
    lines += [
        "| rank | language | pairs | score [CI] | MEXA mean / max | cos parallel | cos non-parallel | "
        "centred parallel | centred non-parallel | centred margin | AUC centred |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["ranking"]:
        r = L[c]
        a = r["aggregate"]
        lo, hi = r["rank_range"]
        rank = str(lo) if lo == hi else f"{lo}–{hi}"
        lines.append(
            f"| {rank} | `{c}` {r['name']} | {r['n']} | {_f(r['score'])} [{_f(r['ci'][0])}, "
            f"{_f(r['ci'][1])}] | {_f(a['mexa']['mean'])} / {_f(a['mexa']['max'])} | "
            f"{_f(a['ranker']['mean'])} | {_f(a['nonparallel']['mean'])} | "
            f"{_f(a['ranker_centered']['mean'])} | {_f(a['nonparallel_centered']['mean'])} | "
            f"{_f(a['margin_centered']['mean'])} | {_f(a['auc_centered']['mean'])} |"
        )
    lines.append("")
    ties = [c for c in result["ranking"] if L[c]["indistinguishable_from"]]
    if ties:
        lines.append(
            "A rank range (`2–4`) means the bootstrap cannot order the language against some others: "
            + "; ".join(f"`{c}` ~ {', '.join(f'`{o}`' for o in L[c]['indistinguishable_from'])}" for c in ties)
            + "."
        )
        lines.append("")
    seps = [L[c]["aggregate"]["margin_centered"]["mean"] for c in result["ranking"]]
    aucs = [L[c]["aggregate"]["auc_centered"]["mean"] for c in result["ranking"]]
    if all(v is not None for v in seps + aucs):
        lines.append(
            f"Parallel vs non-parallel pairs (centred cosine, mean over layers): margin "
            f"{min(seps):.3f} to {max(seps):.3f}, AUC {min(aucs):.3f} to {max(aucs):.3f} (0.5 = no separation)."
        )
        lines.append("")
    if result["skipped"]:
        lines.append("Skipped: " + "; ".join(f"`{c}` ({r})" for c, r in result["skipped"].items()) + ".")
        lines.append("")
    files = [f"{prefix}.json", f"{prefix}_heatmap.png", f"{prefix}_layers.png", f"{prefix}_separation.png"]
    lines.append("Files: " + ", ".join(f"[{f}]({link_dir}{f})" for f in files) + ".")
    lines.append("")
    lines.append(f"![{result['score']['metric']} per layer and language]({link_dir}{prefix}_heatmap.png)")
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out_dir: Path, prefix: str = "language_similarity") -> list[Path]:
    """Heatmap (layers x languages) of the score metric, per-language curves over layers (with the
    non-parallel baseline of the centred cosine), and parallel vs non-parallel bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    codes = result["ranking"]
    if not codes:
        return []
    metric = result["score"]["metric"]
    layers = result["layers"]
    L = result["languages"]
    files = []
    mat = np.array([[np.nan if v is None else v for v in L[c][metric]] for c in codes], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(layers) + 2), max(2.0, 0.4 * len(codes) + 1.2)))
    im = ax.imshow(mat, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(codes)), codes)
    ax.set_xlabel("layer")
    ax.set_title(f"{metric} vs {result['pivot']} ({result['model']}, {result['pooling']})", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    files.append(out_dir / f"{prefix}_heatmap.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for c in codes:
        (line,) = axes[0].plot(layers, [np.nan if v is None else v for v in L[c][metric]], marker=".", label=c)
        axes[1].plot(layers, L[c]["ranker_centered"], color=line.get_color(), label=c)
        axes[1].plot(layers, L[c]["nonparallel_centered"], color=line.get_color(), linestyle=":")
    axes[0].set_title(f"{metric} per layer", fontsize=9)
    axes[1].set_title("centred cosine: parallel (solid) vs non-parallel (dotted)", fontsize=9)
    for a in axes:
        a.set_xlabel("layer")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append(out_dir / f"{prefix}_layers.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(codes) + 2), 3.5))
    x = np.arange(len(codes))
    par = [L[c]["aggregate"]["ranker_centered"]["mean"] for c in codes]
    non = [L[c]["aggregate"]["nonparallel_centered"]["mean"] for c in codes]
    ax.bar(x - 0.2, par, 0.4, label="parallel")
    ax.bar(x + 0.2, non, 0.4, label="non-parallel")
    ax.set_xticks(x, codes, rotation=45)
    ax.set_ylabel("centred cosine (mean over layers)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out_dir / f"{prefix}_separation.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def write_outputs(
    result: dict[str, Any], out_dir: str | Path, prefix: str = "language_similarity", link_dir: str = ""
) -> dict[str, Any]:
    """Write ``<prefix>.json``, ``<prefix>.md`` and the plots; return the card summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{prefix}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md = markdown(result, prefix, link_dir)
    (out / f"{prefix}.md").write_text(f"# Language similarity\n\n{markdown(result, prefix)}", encoding="utf-8")
    files = [out / f"{prefix}.json", out / f"{prefix}.md", *plots(result, out, prefix)]
    return {
        "markdown": md,
        "ranking": result["ranking"],
        "files": [f.name for f in files],
        "scores": {c: result["languages"][c]["score"] for c in result["ranking"]},
    }


# ---------------------------------------------------------------------------------------------- report


@dataclass
class LanguageSimilarityParams:
    model: str = param(
        "gemma-3-270m", doc="transformers model: packaged name, folder, .gguf file or Hub id", kind="path"
    )
    gguf_file: str | None = param(None, doc="GGUF file inside the model folder or Hub repo")
    revision: str | None = param(None, doc="Hub revision (local models are hashed)")
    pivot: str = param("eng_Latn", doc="language every other language is compared with", kind="lang")
    langs: list[str] = param([], doc="languages to score (empty: every language found)", kind="langs")
    columns: dict[str, str] = param({}, doc="wide form: language -> text column, one row per parallel unit")
    text_column: str = param("text", doc="long form: the text column")
    lang_column: str = param("lang", doc="long form: the language column (else <text_column>_lang)")
    id_column: str = param("parallel_id", doc="long form: rows of one parallel unit share this id")
    pooling: list[Literal["mean", "last_token", "weighted_mean"]] = param(
        ["mean"], doc="poolings to compute; the first is scored and ranked", min_items=1
    )
    score: Literal["mexa", "mexa_centered", "ranker_centered", "ranker"] = param(
        "mexa", doc="per-pair metric behind the score and ranking"
    )
    aggregate: Literal["mean", "max"] = param("mean", doc="aggregate of the score over layers")
    max_sentences: int = param(200, doc="pairs per language at most (seeded choice by id)", ge=2, le=10_000_000)
    min_sentences: int = param(
        10,
        doc="skip languages with fewer usable pairs (MEXA and the non-parallel baseline need 2)",
        ge=2,
        le=10_000_000,
    )
    bootstrap: int = param(1000, doc="bootstrap resamples for the confidence interval", ge=10, le=1_000_000)
    confidence: float = param(0.95, doc="confidence level of the interval", ge=0.5, lt=1.0)
    seed: int = param(0, doc="seed of the sentence choice and the bootstrap", ge=0, le=2**63 - 1)
    max_length: int = param(256, doc="tokens per sentence at most", ge=1, le=1_000_000)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto",
        doc="precision: auto = float32 on CPU, bfloat16 on CUDA (bfloat16 vectors differ slightly from float32)",
    )
    name: str = param("language_similarity", doc="file name prefix under reports/", pattern=r"[A-Za-z0-9_.-]+")
    trust_remote_code: bool = param(False, doc="allow model code from the Hub repo")
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)
    batch_size: int = param(
        0, doc="sentences per forward pass (0: 32 on CPU, 256 on CUDA)", runtime=True, ge=0, le=1_000_000
    )


def check_params(p: Any) -> list[tuple[str, str]]:
    problems = []
    for k in p.columns:
        if not langs.is_valid(k):
            problems.append(("columns", f"unknown language code {k!r}"))
    if (
        p.columns
        and langs.is_valid(p.pivot)
        and langs.normalize(p.pivot) not in {langs.normalize(k) for k in p.columns if langs.is_valid(k)}
    ):
        problems.append(("columns", f"no column for the pivot {p.pivot}"))
    return problems


@register("report")
class LanguageSimilarity(Report):
    __doc__ = __doc__
    name = "language_similarity.v1"
    Params = LanguageSimilarityParams

    @classmethod
    def check(cls, params: LanguageSimilarityParams, columns: list[str] | None) -> list[tuple[str, str]]:
        return check_params(params)

    def input_columns(self) -> list[str]:
        p = self.params
        if p.columns:
            return list(dict.fromkeys(p.columns.values()))
        return [p.id_column, p.text_column]  # the language column may be <text_column>_lang: checked at run time

    def run(self, table: Any, reports_dir: Path) -> dict[str, Any]:
        p = self.params
        if not isinstance(table, pl.DataFrame):  # the final stage on disk: read what the report needs
            cols = list(dict.fromkeys([*(p.columns or {}).values(), p.id_column, p.text_column, p.lang_column]))
            cols += [f"{p.text_column}_lang"]
            table = table.read([c for c in cols if c in table.columns])
        sets = sets_from_table(
            table,
            p.pivot,
            p.langs,
            columns=p.columns or None,
            text_column=p.text_column,
            lang_column=p.lang_column,
            id_column=p.id_column,
        )
        sets, skipped = prepare(sets, p.max_sentences, p.min_sentences, p.seed)
        encoder = _load_encoder(p, self.ctx.recipe_dir, self.ctx.device)
        self.ctx.record_model("hidden_states", encoder.id, encoder.revision)
        result = build_report(
            sets,
            encoder,
            pivot=p.pivot,
            poolings=p.pooling,
            score=p.score,
            aggregate=p.aggregate,
            bootstrap=p.bootstrap,
            confidence=p.confidence,
            seed=p.seed,
            cache=self.ctx.cache,
            quiet=self.ctx.quiet,
            skipped=skipped,
        )
        if not result["languages"]:
            log.warning("language_similarity: no language besides the pivot %s had enough pairs", p.pivot)
        return write_outputs(result, reports_dir, p.name, link_dir="reports/")


def _load_encoder(p: Any, base_dir: Path | None, device: str | None) -> Any:
    from ..models.hidden import HiddenStates

    dev = p.device if p.device != "auto" else (device or "auto")
    return HiddenStates(
        p.model,
        base_dir=base_dir,
        device=dev,
        revision=p.revision,
        gguf_file=p.gguf_file,
        max_length=p.max_length,
        batch_size=p.batch_size or None,
        dtype=None if p.dtype == "auto" else p.dtype,
        trust_remote_code=p.trust_remote_code,
    )
