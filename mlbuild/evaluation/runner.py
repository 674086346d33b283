"""The evaluation loop behind ``mlbuild eval retrieval``: retrievers x language subsets -> metrics, and
the files it writes (JSON, a Markdown table per metric, a PNG bar chart, TREC runs, a card section).

Each retriever indexes each distinct corpus once (subsets that share a corpus file share the index; for
BM25 the analyzer language is part of the index, so it is the corpus language), searches the judged
queries of every subset to ``depth`` and is scored with :class:`~mlbuild.evaluation.metrics.Evaluator`
(every judged query counts; one with nothing retrieved scores 0).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import RetrievalSet
from .metrics import Evaluator, Run, parse_metrics
from .retrievers import make_retriever, system_name, to_run
from .trec import read_qrels, read_run, write_run

log = logging.getLogger(__name__)

CARD_START = "<!-- mlbuild:eval-retrieval:start -->"
CARD_END = "<!-- mlbuild:eval-retrieval:end -->"
REPORT_STEM = "eval-retrieval"


@dataclass
class EvalResult:
    results: dict[str, dict[str, dict[str, float]]]  # system -> subset -> metric -> value
    metrics: list[str]
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)  # system -> description
    subsets: dict[str, dict[str, Any]] = field(default_factory=dict)  # subset -> sizes and languages
    depth: int = 0
    runs: dict[str, dict[str, Run]] = field(default_factory=dict)  # system -> subset -> run
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "metrics": self.metrics,
            "depth": self.depth,
            "results": self.results,
            "systems": self.systems,
            "subsets": self.subsets,
        }


def evaluate_sets(
    sets: list[RetrievalSet],
    retrievers: list[str],
    metrics: list[str],
    *,
    depth: int = 1000,
    corpus_lang: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    work_dir: Path | None = None,
    base_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Run every retriever on every set; ``corpus_lang`` is the BM25 analyzer language for corpora whose
    language the layout does not record."""
    names = [n for n, _ in parse_metrics(metrics)]
    res = EvalResult({}, names, depth=depth)
    evaluators = {s.name: Evaluator(s.qrels, names, missing="zero") for s in sets}
    for s in sets:
        res.subsets[s.name] = {
            "queries": len(s.judged_queries()),
            "qrels": sum(len(d) for d in s.qrels.values()),
            "query_lang": s.query_lang,
            "corpus_lang": s.corpus_lang or corpus_lang,
        }
    for spec in retrievers:
        name = system_name(spec)
        if name in res.results:
            raise ValueError(f"retriever {spec!r} is given twice")
        retriever = None
        res.results[name], res.runs[name] = {}, {}
        groups: dict[Any, list[RetrievalSet]] = {}
        for s in sets:
            lang = (s.corpus_lang or corpus_lang) if spec.lower() == "bm25" else None
            groups.setdefault((s.corpus.key, lang), []).append(s)
        for (_, lang), group in groups.items():
            if retriever is None:
                retriever = make_retriever(
                    spec, lang, device=device, batch_size=batch_size, work_dir=work_dir, base_dir=base_dir
                )
            corpus = group[0].corpus
            ids: list[str] = []

            def batches(corpus=corpus, ids=ids):
                for b_ids, texts in corpus.batches():
                    ids.extend(b_ids)
                    yield texts

            if progress:
                progress(f"{name}: indexing the corpus of {', '.join(s.name for s in group)}")
            retriever.index(batches(), lang=lang, size=corpus.size())
            for s in group:
                qs = s.judged_queries()
                qids = list(qs)
                scores, idx = retriever.search([qs[q] for q in qids], depth)
                run = to_run(ids, scores, idx, qids)
                res.runs[name][s.name] = run
                res.results[name][s.name] = evaluators[s.name].aggregate(run)
                res.subsets[s.name]["documents"] = len(ids)
                if progress:
                    progress(
                        f"{name} / {s.name}: "
                        + ", ".join(f"{m} {v:.4f}" for m, v in res.results[name][s.name].items())
                    )
        res.systems[name] = {"spec": spec, **(retriever.describe() if retriever else {})}
    return res


def evaluate_runs(run_files: list[str | Path], qrels_file: str | Path, metrics: list[str]) -> EvalResult:
    """Score TREC run files against a qrels file as trec_eval does (queries in both; subset ``all``)."""
    qrels = read_qrels(qrels_file)
    ev = Evaluator(qrels, metrics, missing="skip")
    names = [n for n, _ in ev.metrics]
    res = EvalResult({}, names, source=str(qrels_file))
    res.subsets["all"] = {"queries": len(qrels), "qrels": sum(len(d) for d in qrels.values())}
    for f in run_files:
        stem = Path(f).stem
        if stem in res.results:
            raise ValueError(f"two run files are named {stem!r}")
        run = read_run(f)
        res.results[stem] = {"all": ev.aggregate(run)}
        res.systems[stem] = {"run": str(f), "queries": len(run)}
    return res


# ------------------------------------------------------------------------------------------ outputs


def markdown(res: EvalResult) -> str:
    """One table per metric: a row per language subset, a column per retriever, and the mean."""
    systems = list(res.results)
    subsets = list(res.subsets)
    out = []
    for m in res.metrics:
        out.append(f"**{m}**\n")
        out.append("| subset | " + " | ".join(systems) + " |")
        out.append("|---|" + "---:|" * len(systems))
        for sub in subsets:
            cells = [res.results[s].get(sub, {}).get(m) for s in systems]
            out.append(f"| {sub} | " + " | ".join("" if v is None else f"{v:.4f}" for v in cells) + " |")
        if len(subsets) > 1:
            means = []
            for s in systems:
                vals = [res.results[s][sub][m] for sub in subsets if sub in res.results[s]]
                means.append(f"{sum(vals) / len(vals):.4f}" if vals else "")
            out.append("| *mean* | " + " | ".join(means) + " |")
        out.append("")
    return "\n".join(out)


def bar_chart(res: EvalResult) -> bytes:
    """A PNG: one panel per metric, bars grouped by subset, one colour per retriever."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems, subsets = list(res.results), list(res.subsets)
    n = len(res.metrics)
    fig, axes = plt.subplots(n, 1, figsize=(max(6.0, 0.9 * len(subsets) * max(1, len(systems)) + 2), 2.8 * n))
    axes = np.atleast_1d(axes)
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(subsets))
    for ax, m in zip(axes, res.metrics):
        for j, s in enumerate(systems):
            vals = [res.results[s].get(sub, {}).get(m, 0.0) for sub in subsets]
            ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=s)
        ax.set_xticks(x, subsets, rotation=30 if len(subsets) > 6 else 0)
        ax.set_ylabel(m)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("retrieval evaluation")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(res: EvalResult, out_dir: Path, runs: bool = True) -> list[Path]:
    """``eval-retrieval.json|md|png`` (+ ``runs/<system>/<subset>.trec``) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / f"{REPORT_STEM}.json", out_dir / f"{REPORT_STEM}.md", out_dir / f"{REPORT_STEM}.png"]
    files[0].write_text(json.dumps(res.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files[1].write_text(markdown(res), encoding="utf-8")
    files[2].write_bytes(bar_chart(res))
    if runs:
        for system, by_subset in res.runs.items():
            for sub, run in by_subset.items():
                p = out_dir / "runs" / system / f"{sub}.trec"
                write_run(p, run, tag=system)
                files.append(p)
    return files


def card_section(res: EvalResult, fingerprint: str | None = None) -> str:
    """The card's ``Retrieval evaluation`` section (between markers, see :func:`update_card`)."""
    on = f" on the data of fingerprint `{fingerprint[:12]}`" if fingerprint else ""
    lines = [
        CARD_START,
        "## Retrieval evaluation",
        "",
        f"Written by `mlbuild eval retrieval`{on} (rerun it to refresh this section); depth {res.depth}, "
        "every judged query counted. Files: [reports/eval-retrieval.json](reports/eval-retrieval.json), "
        "[reports/eval-retrieval.md](reports/eval-retrieval.md), [reports/eval-retrieval.png](reports/eval-retrieval.png).",
        "",
        markdown(res).rstrip(),
        "",
        CARD_END,
    ]
    return "\n".join(lines)


def update_card(readme: Path, section: str) -> None:
    """Put ``section`` into the card between its markers: replaced when present (a rerun never duplicates
    it), appended otherwise. The YAML front matter is left as it is."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    pattern = re.compile(re.escape(CARD_START) + r".*?" + re.escape(CARD_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    tmp.replace(readme)
