"""Agreement of judged grades with reference grades, from counts that add up across shards.

A confusion table is a dict ``"<reference>/<judged>" -> count`` (judged may be ``unparsed``), so step
stats can sum it shard by shard. Cohen's kappa comes from scikit-learn's ``cohen_kappa_score`` with the
table's cells as weighted samples (``sample_weight``): unweighted on the 0-3 scale, quadratic-weighted
(grades are ordinal), and binary (relevant = at or above a threshold). Unparsed judgments are left out
of kappa and counted on their own.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

UNPARSED = "unparsed"


def cell(reference: int, judged: int | None) -> str:
    return f"{reference}/{UNPARSED if judged is None else judged}"


def pairs(confusion: dict[str, int]) -> list[tuple[int, int, int]]:
    """(reference, judged, count) for the parsed cells with a count."""
    out = []
    for key, n in confusion.items():
        ref, _, judged = key.partition("/")
        if n and judged != UNPARSED:
            out.append((int(ref), int(judged), int(n)))
    return sorted(out)


def kappa(cells: list[tuple[int, int, int]], weights: str | None = None) -> float | None:
    """Cohen's kappa of (reference, judged, count) cells; None when undefined (no pairs, or both raters
    always gave one and the same label)."""
    if not cells:
        return None
    from sklearn.metrics import cohen_kappa_score

    y1 = [r for r, _, _ in cells]
    y2 = [j for _, j, _ in cells]
    w = [n for _, _, n in cells]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0/0 when both raters use a single label: reported as None
        k = cohen_kappa_score(y1, y2, weights=weights, sample_weight=w)
    return None if math.isnan(k) else float(k)


def agreement(confusion: dict[str, int], relevant_at: int, reference_relevant_at: int) -> dict[str, Any]:
    """Kappas, exact agreement and binary precision/recall of the judge against the reference."""
    cells = pairs(confusion)
    n = sum(c for _, _, c in cells)
    unparsed = sum(v for k, v in confusion.items() if k.endswith(f"/{UNPARSED}"))
    binary = {}
    for r, j, c in cells:
        key = (int(r >= reference_relevant_at), int(j >= relevant_at))
        binary[key] = binary.get(key, 0) + c
    tp, fp, fn = binary.get((1, 1), 0), binary.get((0, 1), 0), binary.get((1, 0), 0)
    return {
        "pairs": n,
        "unparsed": unparsed,
        "kappa": kappa(cells),
        "kappa_quadratic": kappa(cells, "quadratic"),
        "kappa_binary": kappa([(r, j, c) for (r, j), c in sorted(binary.items())]),
        "exact_agreement": (sum(c for r, j, c in cells if r == j) / n) if n else None,
        "binary_agreement": ((tp + binary.get((0, 0), 0)) / n) if n else None,
        "precision_relevant": (tp / (tp + fp)) if tp + fp else None,
        "recall_relevant": (tp / (tp + fn)) if tp + fn else None,
    }


def confusion_markdown(confusion: dict[str, int], max_grade: int = 3) -> str:
    """The table with references as rows and judged grades (then unparsed) as columns."""
    refs = sorted({int(k.partition("/")[0]) for k in confusion})
    cols = [str(g) for g in range(max_grade + 1)] + [UNPARSED]
    lines = ["| reference \\ judged | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in refs:
        lines.append(f"| {r} | " + " | ".join(str(confusion.get(f"{r}/{c}", 0)) for c in cols) + " |")
    return "\n".join(lines)
