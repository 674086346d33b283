"""A language-similarity result as a :class:`~mlbuild.pipeline.base.StepReport`: ``data`` (every number),
``markdown`` (the table, the separation check, links), PNG ``plots``; filed like a step's report, as
``<name>.json``, ``<name>.md`` and ``<name>.<plot>.png`` (:func:`mlbuild.publish.writer.file_report`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline.base import StepReport

PLOTS = ("heatmap", "layers", "separation")


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def markdown(
    result: dict[str, Any], prefix: str = "language_similarity", link_dir: str = "", files: bool = True
) -> str:
    """The table of languages, best first, with the separation check, links to the files (``files``) and the
    heatmap; links start with ``link_dir``."""
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
    if files:
        names = [f"{prefix}.json", *(f"{prefix}.{p}.png" for p in PLOTS)]
        lines.append("Files: " + ", ".join(f"[{f}]({link_dir}{f})" for f in names) + ".")
        lines.append("")
    lines.append(f"![{result['score']['metric']} per layer and language]({link_dir}{prefix}.heatmap.png)")
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any]) -> dict[str, bytes]:
    """PNG images by name (:data:`PLOTS`): heatmap (layers x languages) of the score metric, per-language
    curves over layers (with the non-parallel baseline of the centred cosine), and parallel vs non-parallel
    bars. Empty without a scored language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    codes = result["ranking"]
    if not codes:
        return {}
    metric = result["score"]["metric"]
    layers = result["layers"]
    L = result["languages"]
    out = {}
    mat = np.array([[np.nan if v is None else v for v in L[c][metric]] for c in codes], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(layers) + 2), max(2.0, 0.4 * len(codes) + 1.2)))
    im = ax.imshow(mat, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(codes)), codes)
    ax.set_xlabel("layer")
    ax.set_title(f"{metric} vs {result['pivot']} ({result['model']}, {result['pooling']})", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out["heatmap"] = _png(fig, plt)

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
    out["layers"] = _png(fig, plt)

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
    out["separation"] = _png(fig, plt)
    return out


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def as_report(result: dict[str, Any], prefix: str = "language_similarity", link_dir: str = "") -> StepReport:
    """The result as a report: ``summary`` for the card (links start with ``link_dir``, e.g. ``reports/``),
    ``markdown`` for ``<prefix>.md`` (links to the files beside it), ``data`` and ``plots``."""
    images = plots(result)
    card = markdown(result, prefix, link_dir, files=False).rstrip("\n")
    return StepReport(
        summary=card + ("\n\nEvery number and the plots" if images else "\n\nEvery number"),
        data=result,
        markdown="# Language similarity\n\n" + markdown(result, prefix),
        plots=images,
    )


def write(
    result: dict[str, Any], out_dir: str | Path, prefix: str = "language_similarity", link_dir: str = ""
) -> dict:
    """File the result under ``out_dir`` as ``<prefix>.json|md|<plot>.png``; return the card summary
    (``markdown``, ``files``) with the ranking and the scores."""
    from ..publish.writer import file_report

    summary = file_report(as_report(result, prefix, link_dir), prefix, Path(out_dir))
    summary["files"] = [Path(f).name for f in summary["files"]]
    return {
        **summary,
        "ranking": result["ranking"],
        "scores": {c: result["languages"][c]["score"] for c in result["ranking"]},
    }
