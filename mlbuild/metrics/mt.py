"""MT metrics with sacrebleu: sentence chrF (round-trip gate), corpus chrF and BLEU with signatures.

Scores come with sacrebleu's signature string so numbers in reports can be compared and reproduced.
BLEU's tokenizer follows the target script (``zh`` for Han, ``char`` for Japanese, Korean, Thai and
other scripts written without spaces, ``13a`` otherwise).
"""

from __future__ import annotations

from typing import Any

from ..errors import requires

_CHAR_SCRIPTS = {"Jpan", "Kore", "Hang", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
_ZH_SCRIPTS = {"Hans", "Hant", "Hani"}


def _sacrebleu():
    return requires("sacrebleu", "pip install sacrebleu", "MT metrics (chrF, BLEU)")


def bleu_tokenizer(lang: str | None) -> str:
    scr = lang.split("_")[1] if lang and "_" in lang else ""
    if scr in _ZH_SCRIPTS:
        return "zh"
    if scr in _CHAR_SCRIPTS:
        return "char"
    return "13a"


def sentence_chrf(hyps: list[str], refs: list[str]) -> list[float]:
    """chrF (0-100) of each hypothesis against its reference."""
    _sacrebleu()
    from sacrebleu.metrics import CHRF

    m = CHRF()
    return [float(m.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]


def corpus_scores(hyps: list[str], refs: list[str], lang: str | None = None) -> dict[str, Any]:
    """Corpus chrF and BLEU of ``hyps`` against one reference each, with sacrebleu signatures."""
    _sacrebleu()
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    chrf, bleu = CHRF(), BLEU(tokenize=bleu_tokenizer(lang))
    c = chrf.corpus_score(hyps, [refs])
    b = bleu.corpus_score(hyps, [refs])
    return {
        "n": len(hyps),
        "chrf": round(float(c.score), 2),
        "bleu": round(float(b.score), 2),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_signature": str(bleu.get_signature()),
    }
