"""Language identification with fastText (``lid.176.ftz`` by default; any fastText LID model by path,
e.g. GlotLID). ``predict(texts, k)`` -> codes in the internal form (``kir_Cyrl``) and probabilities."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import langs
from ..errors import requires
from .resolve import ModelRef, resolve_model

log = logging.getLogger(__name__)

# Regex script names (Rust regex / polars) for the scripts we check in text.
SCRIPT_REGEX = {
    "Latn": r"\p{Latin}",
    "Cyrl": r"\p{Cyrillic}",
    "Arab": r"\p{Arabic}",
    "Grek": r"\p{Greek}",
    "Hebr": r"\p{Hebrew}",
    "Deva": r"\p{Devanagari}",
    "Beng": r"\p{Bengali}",
    "Geor": r"\p{Georgian}",
    "Armn": r"\p{Armenian}",
    "Thai": r"\p{Thai}",
    "Ethi": r"\p{Ethiopic}",
    "Taml": r"\p{Tamil}",
    "Telu": r"\p{Telugu}",
    "Knda": r"\p{Kannada}",
    "Mlym": r"\p{Malayalam}",
    "Gujr": r"\p{Gujarati}",
    "Guru": r"\p{Gurmukhi}",
    "Sinh": r"\p{Sinhala}",
    "Khmr": r"\p{Khmer}",
    "Laoo": r"\p{Lao}",
    "Mymr": r"\p{Myanmar}",
    "Tibt": r"\p{Tibetan}",
    "Hang": r"[\p{Hangul}\p{Han}]",
    "Kore": r"[\p{Hangul}\p{Han}]",
    "Hans": r"\p{Han}",
    "Hant": r"\p{Han}",
    "Hani": r"\p{Han}",
    "Jpan": r"[\p{Hiragana}\p{Katakana}\p{Han}]",
}


def label_to_code(label: str) -> str:
    raw = label.removeprefix("__label__")
    try:
        return langs.normalize(raw)
    except langs.UnknownLanguage:
        return raw  # GlotLID-style labels already carry a script ("kir_Cyrl"); keep unknown ones as they are


class FastTextLID:
    """A fastText language-ID model. Thread-safe for prediction."""

    def __init__(self, model: str = "lid.176", base_dir: Path | None = None):
        fasttext = requires("fasttext", "pip install fasttext-numpy2-wheel", "language identification")
        self.ref: ModelRef = resolve_model(model, base_dir)
        if self.ref.path is None:
            self.ref = ModelRef(model, _hub_file(model), "main", "hub")
        self.model = fasttext.load_model(str(self.ref.path))
        self._codes: dict[str, str] = {}

    @property
    def id(self) -> str:
        return self.ref.ref

    @property
    def revision(self) -> str:
        return self.ref.revision

    def _code(self, label: str) -> str:
        c = self._codes.get(label)
        if c is None:
            c = self._codes[label] = label_to_code(label)
        return c

    def predict(self, texts: list[str], k: int = 1) -> tuple[list[list[str]], np.ndarray]:
        """Return (codes per text, probabilities of shape [n, k]). Newlines are flattened (fastText
        reads one line per text)."""
        if not texts:
            return [], np.zeros((0, k), dtype=np.float32)
        clean = [t.replace("\n", " ").replace("\r", " ") if ("\n" in t or "\r" in t) else t for t in texts]
        if not self._codes:
            self._codes = {lbl: label_to_code(lbl) for lbl in self.model.get_labels()}
        labels, probs = self.model.predict(clean, k=k)
        code = self._codes
        try:
            codes = [[code[lbl] for lbl in row] for row in labels]
        except KeyError:
            codes = [[self._code(lbl) for lbl in row] for row in labels]
        if k == 1:
            arr = np.fromiter((p[0] if len(p) else 0.0 for p in probs), dtype=np.float32, count=len(texts))
            return codes, arr.reshape(-1, 1)
        arr = np.zeros((len(texts), k), dtype=np.float32)
        for i, p in enumerate(probs):
            arr[i, : len(p)] = p
        return codes, arr


def _hub_file(ref: str) -> Path:
    """A fastText model on the Hub (e.g. ``cis-lmu/glotlid``): ``model.bin`` through the HF cache."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(ref, "model.bin"))


# Families fastText confuses; a prediction inside the expected language's family is accepted when
# the expected language is also among the top-k predictions and the script matches.
DEFAULT_CONFUSABLE: list[list[str]] = [
    ["kaz_Cyrl", "kir_Cyrl", "tat_Cyrl", "bak_Cyrl", "uzb_Cyrl"],
    ["tur_Latn", "aze_Latn"],
    ["uig_Arab", "uzb_Arab"],
    ["ind_Latn", "msa_Latn", "zsm_Latn"],
    ["hrv_Latn", "bos_Latn", "srp_Latn", "hbs_Latn"],
    ["srp_Cyrl", "mkd_Cyrl", "bul_Cyrl"],
    ["rus_Cyrl", "ukr_Cyrl", "bel_Cyrl"],
    ["nor_Latn", "nob_Latn", "nno_Latn", "dan_Latn", "swe_Latn"],
    ["glg_Latn", "por_Latn"],
    ["cat_Latn", "spa_Latn", "oci_Latn"],
    ["ces_Latn", "slk_Latn"],
    ["hin_Deva", "mar_Deva", "nep_Deva"],
    ["fas_Arab", "pes_Arab", "prs_Arab"],
    ["swa_Latn", "swh_Latn"],
    ["zho_Hans", "zho_Hant", "yue_Hant", "wuu_Hans"],
]


def _lang(code: str) -> str:
    return code.split("_")[0]


def families_index(families: list[list[str]]) -> dict[str, frozenset[str]]:
    idx: dict[str, set[str]] = {}
    for fam in families:
        base = {_lang(langs.normalize(c)) if langs.is_valid(c) else _lang(c) for c in fam}
        for c in base:
            idx.setdefault(c, set()).update(base)
    return {k: frozenset(v) for k, v in idx.items()}


def script_ok(texts: list[str], script: str) -> np.ndarray:
    """True where the letters of a text are mostly of ``script`` (or it has no letters)."""
    import polars as pl

    rx = SCRIPT_REGEX.get(script)
    if rx is None:
        return np.ones(len(texts), dtype=bool)
    s = pl.Series("t", texts, dtype=pl.Utf8)
    letters = s.str.count_matches(r"\p{L}").to_numpy()
    ours = s.str.count_matches(rx).to_numpy()
    return (letters == 0) | (ours * 2 >= letters)


def check_languages(
    lid: FastTextLID,
    texts: list[str],
    expected: list[str | None],
    *,
    min_score: float = 0.0,
    families: dict[str, frozenset[str]] | None = None,
    script_check: bool = True,
    short_text: int = 20,
    top_k: int = 3,
    min_ratio: float = 0.0,
) -> dict[str, object]:
    """Predict languages and decide, per text, whether it is in the expected language.

    A text whose top prediction is another language is still accepted when the expected language is
    among the top ``top_k`` and one of these holds:

    - the top prediction is in the expected language's confusable family (``families``);
    - the text is shorter than ``short_text`` characters;
    - ``min_ratio > 0`` and the expected language's probability is at least ``min_ratio`` times the top
      one's: fastText is unsure between close languages (a Portuguese sentence read as Spanish 0.48,
      Portuguese 0.39), so only a confident other language rejects the text.

    Returns a dict with ``codes`` (top-1 code), ``scores``, ``ok`` (bool array; True where no
    expectation), ``reasons`` (None or ``lang_mismatch`` / ``lang_low_score`` / ``wrong_script``),
    ``details`` and ``counts`` (accepted through the confusable family, the short-text rule and, with
    ``min_ratio``, the ratio rule: ``ratio_accepted``).

    Throughput: one top-1 ``predict`` over all texts; only the rows that disagree with their expected
    language (and could still be accepted) get a second, top-k prediction."""
    families = families if families is not None else families_index(DEFAULT_CONFUSABLE)
    n = len(texts)
    codes_1, probs_1 = lid.predict(texts, k=1)
    top = [c[0] if c else "und" for c in codes_1]
    scores = probs_1[:, 0] if n else np.zeros(0, dtype=np.float32)
    ok = np.ones(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    counts = {"confusable_accepted": 0, "short_text_accepted": 0}
    if min_ratio > 0:
        counts["ratio_accepted"] = 0
    low = scores < min_score
    has_exp = np.fromiter((e is not None for e in expected), dtype=bool, count=n)
    same = np.fromiter(
        (e is not None and e.split("_")[0] == t.split("_")[0] for e, t in zip(expected, top)), dtype=bool, count=n
    )
    sc_ok = np.ones(n, dtype=bool)
    if script_check and has_exp.any():
        by_script: dict[str, list[int]] = {}
        for i in np.flatnonzero(has_exp).tolist():
            by_script.setdefault(expected[i].split("_")[1], []).append(i)
        for scr, idx in by_script.items():
            sc_ok[idx] = script_ok([texts[i] for i in idx], scr)
    for i in np.flatnonzero(~has_exp & low).tolist():
        ok[i], reasons[i] = False, "lang_low_score"
        details[i] = f"detected {top[i]} with score {scores[i]:.2f} < {min_score}"
    for i in np.flatnonzero(has_exp & ~sc_ok).tolist():
        ok[i], reasons[i] = False, "wrong_script"
        details[i] = f"expected {expected[i]} script, found {langs.script_of_text(texts[i])}"
    for i in np.flatnonzero(has_exp & sc_ok & same & low).tolist():
        ok[i], reasons[i] = False, "lang_low_score"
        details[i] = f"{top[i]} with score {scores[i]:.2f} < {min_score}"
    differ = np.flatnonzero(has_exp & sc_ok & ~same).tolist()
    rule = {"families": families, "short_text": short_text, "top_k": top_k, "min_ratio": min_ratio}
    for i, accepted, p_exp in _judge_disagreements(lid, texts, expected, top, scores, differ, **rule):
        if accepted:
            counts[accepted] += 1
            continue
        ok[i], reasons[i] = False, "lang_mismatch"
        details[i] = f"expected {expected[i]}, detected {top[i]} ({scores[i]:.2f})"
        if p_exp is not None:
            details[i] += f"; {expected[i]} {p_exp:.2f}"
    return {"codes": top, "scores": scores, "ok": ok, "reasons": reasons, "details": details, "counts": counts}


def _judge_disagreements(
    lid: FastTextLID,
    texts: list[str],
    expected: list[str | None],
    top: list[str],
    scores: np.ndarray,
    differ: list[int],
    *,
    families: dict[str, frozenset[str]],
    short_text: int,
    top_k: int,
    min_ratio: float,
) -> list[tuple[int, str | None, float | None]]:
    """For the texts whose top prediction is not their expected language: (index, the counter of the rule
    that accepts it or None, the expected language's probability in the top k or None).

    Only a prediction inside the expected language's family, a short text or (with ``min_ratio``) any
    disagreement can still be accepted: those get a top-k prediction; the rest are mismatches as they stand."""
    out: list[tuple[int, str | None, float | None]] = []
    rescue = []
    for i in differ:
        if min_ratio > 0 or len(texts[i]) < short_text or _lang(top[i]) in families.get(_lang(expected[i]), ()):
            rescue.append(i)
        else:
            out.append((i, None, None))
    if not rescue:
        return out
    codes_k, probs_k = lid.predict([texts[i] for i in rescue], k=top_k)
    for j, (i, cands) in enumerate(zip(rescue, codes_k)):
        el = _lang(expected[i])
        p_exp = next((float(probs_k[j, r]) for r, c in enumerate(cands) if _lang(c) == el), None)
        accepted = None
        if p_exp is not None and _lang(top[i]) in families.get(el, ()):
            accepted = "confusable_accepted"
        elif p_exp is not None and len(texts[i]) < short_text:
            accepted = "short_text_accepted"
        elif p_exp is not None and min_ratio > 0 and p_exp >= min_ratio * float(scores[i]):
            accepted = "ratio_accepted"
        out.append((i, accepted, p_exp))
    return out
