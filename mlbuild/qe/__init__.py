"""Quality estimation of translations without references: one scorer interface, two methods, one gate.

- ``embedding`` (:class:`~mlbuild.qe.embedding.EmbeddingQE`): cosine between the source and the
  translation under a multilingual sentence encoder (the packaged multilingual-e5-small by default, any
  encoder by path or Hub id), and a *relative* score: the cosine minus the mean cosine between the
  translation and the *other* sources of the same batch (the shuffled pairs), so a translation must be
  clearly closer to its own source than to unrelated ones. Works offline; vectors go through the run's
  model-call cache (``cache.map_vectors``).
- ``comet`` (:class:`~mlbuild.qe.comet.CometQE`): reference-free COMET (CometKiwi-style checkpoints) through
  ``unbabel-comet``, by local path or Hub id, batched, on GPU when there is one.

:func:`load_scorer` builds one; ``scorer.score(sources, targets) -> QEScores``; :func:`verdict` turns scores
and thresholds into a :class:`~mlbuild.pipeline.filters.Verdict` (reasons ``qe_low``, ``qe_margin_low``);
:func:`add_stats` / :func:`summarize` keep the per-language distribution and rejected examples for reports.
``translate.v1`` (``gates = [..., "qe"]``) and ``qe_filter.v1`` share all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..pipeline.filters import Verdict
from .scores import QEScores, scored

METHODS = ("embedding", "comet")
DEFAULT_EMBEDDING_MODEL = "multilingual-e5-small"
# tuned on the dev half of Tatoeba (6 pairs with English) with multilingual-e5-small: scripts/eval_qe.py, docs/qe_filter.md
DEFAULT_MIN_MARGIN = 0.0475
REASONS = ("qe_low", "qe_margin_low")
__all__ = ["QEScores", "scored", "load_scorer", "verdict", "add_stats", "summarize", "markdown"]
EXAMPLES_PER_BATCH = 3


def load_scorer(
    method: str,
    model: str | None = None,
    base_dir: Path | None = None,
    device: str = "auto",
    *,
    cache: Any = None,
    batch_size: int = 64,
    min_batch: int = 8,
) -> Any:
    """A scorer for ``method`` (``embedding``: ``model`` defaults to the packaged multilingual-e5-small;
    ``comet``: ``model`` is a COMET checkpoint folder, ``.ckpt`` file or Hub id)."""
    if method == "embedding":
        from .embedding import EmbeddingQE

        return EmbeddingQE.load(model, base_dir, device, cache=cache, batch_size=batch_size, min_batch=min_batch)
    if method == "comet":
        if not model:
            raise ValueError("qe = 'comet' needs a model: a COMET checkpoint (e.g. Unbabel/wmt22-cometkiwi-da)")
        from .comet import CometQE

        return CometQE(model, base_dir, device, cache=cache, batch_size=batch_size)
    raise ValueError(f"unknown QE method {method!r} (known: {', '.join(METHODS)})")


def verdict(
    scores: QEScores, min_score: float | None = None, min_margin: float | None = None, fmt: str = "{:.3f}"
) -> Verdict:
    """``qe_low`` where the score is under ``min_score``, else ``qe_margin_low`` where the relative score is
    under ``min_margin`` (None turns a test off; unscored rows pass)."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for s, m in zip(scores.score, scores.margin, strict=True):
        if s is not None and min_score is not None and s < min_score:
            reasons.append("qe_low")
            details.append(f"QE score {fmt.format(s)} < {min_score}")
        elif m is not None and min_margin is not None and m < min_margin:
            reasons.append("qe_margin_low")
            details.append(f"QE margin over the batch's other sources {fmt.format(m)} < {min_margin}")
        else:
            reasons.append(None)
            details.append(None)
    return Verdict(reasons, details)


def _bin(x: float) -> str:
    """Histogram bin (width 0.05) of a score, as its lower edge."""
    import math

    return f"{math.floor(round(x * 20, 6)) / 20:.2f}"


def add_stats(
    st: dict[str, Any],
    scores: QEScores,
    v: Verdict,
    sources: Sequence[str | None],
    targets: Sequence[str | None],
) -> None:
    """Add one batch's scores to ``st`` (summable: counts, sums and 0.05-wide histograms of score and margin),
    with up to :data:`EXAMPLES_PER_BATCH` rejected rows as examples."""
    for key, vals in (("score", scores.score), ("margin", scores.margin)):
        got = [x for x in vals if x is not None]
        d = st.setdefault(key, {"n": 0, "sum": 0.0, "hist": {}})
        d["n"] += len(got)
        d["sum"] += float(sum(got))
        for x in got:
            b = _bin(x)
            d["hist"][b] = d["hist"].get(b, 0) + 1
    st.setdefault("failed", {})
    for r, n in v.failed().items():
        st["failed"][r] = st["failed"].get(r, 0) + n
    ex = st.setdefault("examples", [])
    bad = [i for i, r in enumerate(v.reasons) if r is not None][:EXAMPLES_PER_BATCH]
    for i in bad:
        ex.append({"source": (sources[i] or "")[:200], "target": (targets[i] or "")[:200], "why": v.details[i]})


def _quantile(hist: dict[str, int], q: float) -> float | None:
    """A quantile read from a 0.05-wide histogram (the bin's lower edge)."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for b in sorted(hist, key=float):
        seen += hist[b]
        if seen >= q * total:
            return float(b)
    return float(max(hist, key=float))


def summarize(st: dict[str, Any], max_examples: int = 5) -> dict[str, Any]:
    """The report entry of one language's merged QE stats: mean, p5/p50 (histogram bins), histogram,
    failures and a few rejected examples."""
    out: dict[str, Any] = {"failed": dict(sorted(st.get("failed", {}).items()))}
    for key in ("score", "margin"):
        d = st.get(key) or {}
        if d.get("n"):
            hist = dict(sorted(d["hist"].items(), key=lambda kv: float(kv[0])))
            out[key] = {
                "n": d["n"],
                "mean": round(d["sum"] / d["n"], 4),
                "p5": _quantile(hist, 0.05),
                "p50": _quantile(hist, 0.5),
                "hist": hist,
            }
    out["examples"] = list(st.get("examples", []))[:max_examples]
    return out


def markdown(per_lang: dict[str, dict[str, Any]], method: str) -> list[str]:
    """Markdown lines: a table of the QE distribution per language and a few rejected examples."""
    if not per_lang:
        return []
    lines = [
        f"Quality estimation (`{method}`): score and margin per language (mean; p5 and median from 0.05 bins).",
        "",
        "| language | scored | score mean | score p5 | score p50 | margin mean | margin p5 | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lang, s in per_lang.items():
        sc, mg = s.get("score", {}), s.get("margin", {})
        failed = ", ".join(f"{k}: {v}" for k, v in s["failed"].items()) or "none"
        lines.append(
            f"| `{lang}` | {sc.get('n', 0)} | {sc.get('mean', '-')} | {sc.get('p5', '-')} | {sc.get('p50', '-')} | "
            f"{mg.get('mean', '-')} | {mg.get('p5', '-')} | {failed} |"
        )
    ex = [(lang, e) for lang, s in per_lang.items() for e in s.get("examples", [])]
    if ex:
        lines += ["", "Rejected by quality estimation (examples):", ""]
        for lang, e in ex:
            lines.append(f"- `{lang}`: {e['source']!r} -> {e['target']!r} ({e['why']})")
    return lines
