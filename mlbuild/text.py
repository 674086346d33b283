"""Text utilities shared by steps: sentence segmentation with faithful reassembly, repetition (loop)
detection, near-copy similarity and length ratios.

Segmentation keeps every character that is not inside a segment as a separator, so
``"".join(split_segments(t))`` is always ``t``, and translating the segments keeps paragraph breaks,
indentation and spacing exactly::

    parts = split_segments("One. Two!\\n\\nThree?")   # ['', 'One.', ' ', 'Two!', '\\n\\n', 'Three?', '']
    reassemble(parts, ["Um.", "Dois!", "Três?"])        # 'Um. Dois!\\n\\nTrês?'

Even positions hold separators (whitespace, possibly empty), odd positions hold segments.
"""

from __future__ import annotations

import re
import unicodedata

# Words after which a period does not end a sentence (lower-cased, without the period).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf fig figs no nos vol vols pp ed eds approx al inc ltd co "
    "corp dept univ jan feb mar apr jun jul aug sep sept oct nov dec sra sres srs dra profa av nº art cap "
    "gen col lt sgt rev hon u.s u.k a.m p.m ca op".split()
)
# A sentence end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_END_WS = re.compile(r"[.!?…‼⁇⁈⁉।॥؟።]+[\"'”’»›)\]]*(?=\s)")
# Full-width terminators end a sentence without any following space.
_END_CJK = re.compile(r"[。！？]+[”’」』）]*")
_WS = re.compile(r"\s+")
_PARA = re.compile(r"\s*\n\s*")


def split_segments(text: str, mode: str = "sentence", max_chars: int | None = None) -> list[str]:
    """Split ``text`` into alternating separators and segments (see the module doc). ``mode``:
    ``"sentence"`` (paragraphs, then sentences) or ``"none"`` (the whole stripped text is one segment).
    ``max_chars`` further splits overlong segments at clause punctuation or spaces."""
    if mode not in ("sentence", "none"):
        raise ValueError(f"unknown segmentation mode {mode!r} (known: sentence, none)")
    stripped = text.strip()
    if not stripped:
        return [text]
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    if mode == "none":
        return [lead, stripped, trail]
    parts: list[str] = [lead]
    pos = 0
    for m in _PARA.finditer(stripped):
        _add_paragraph(parts, stripped[pos : m.start()], max_chars)
        parts.append(m.group())
        pos = m.end()
    _add_paragraph(parts, stripped[pos:], max_chars)
    parts.append(trail)
    return parts


def _add_paragraph(parts: list[str], para: str, max_chars: int | None) -> None:
    """Append a paragraph's segments (odd) and the separators between them (even)."""
    sents = _sentences(para)
    for i, (seg, sep) in enumerate(sents):
        pieces = _cut_long(seg, max_chars)
        for j, (piece, psep) in enumerate(pieces):
            parts.append(piece)
            if j < len(pieces) - 1:
                parts.append(psep)
        if i < len(sents) - 1:
            parts.append(sep)


def _sentences(para: str) -> list[tuple[str, str]]:
    """(sentence, separator after it) pairs of a paragraph with no leading/trailing whitespace."""
    cuts: list[tuple[int, int]] = []  # (end of sentence, start of next)
    for m in _END_WS.finditer(para):
        end = m.end()
        ws = _WS.match(para, end)
        nxt = ws.end() if ws else end
        if nxt >= len(para) or not _is_boundary(para, m.start(), nxt):
            continue
        cuts.append((end, nxt))
    for m in _END_CJK.finditer(para):
        end = m.end()
        ws = _WS.match(para, end)
        nxt = ws.end() if ws else end
        if nxt < len(para):
            cuts.append((end, nxt))
    cuts.sort()
    out, pos = [], 0
    for end, nxt in cuts:
        if end <= pos:
            continue
        out.append((para[pos:end], para[end:nxt]))
        pos = nxt
    out.append((para[pos:], ""))
    return out


def _is_boundary(para: str, punct_at: int, next_start: int) -> bool:
    nxt = para[next_start]
    if nxt.islower():  # "e.g. this", "approx. ten": a lower-case start continues the sentence
        return False
    if para[punct_at] != ".":
        return True
    m = re.search(r"(\S+)$", para[:punct_at])
    word = m.group(1) if m else ""
    w = word.lower().strip("\"'“‘«(")
    if w in ABBREVIATIONS:
        return False
    if len(w) == 1 and w.isalpha():  # an initial: "J. Smith"
        return False
    if re.fullmatch(r"(?:[a-z]\.)+[a-z]", w):  # "U.S", "e.g"
        return False
    if w.isdigit() and next_start < len(para) and nxt.isdigit():  # "3. 4" enumerations stay together
        return False
    return True


def _cut_long(seg: str, max_chars: int | None) -> list[tuple[str, str]]:
    if not max_chars or len(seg) <= max_chars:
        return [(seg, "")]
    out: list[tuple[str, str]] = []
    rest = seg
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = max((window.rfind(p) + len(p) for p in (", ", "; ", ": ", " – ", " - ")), default=-1)
        if cut <= 0 or cut < max_chars // 3:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        head = rest[:cut].rstrip()
        m = _WS.match(rest, len(head))
        start = m.end() if m else len(head)
        out.append((head, rest[len(head) : start]))
        rest = rest[start:]
    out.append((rest, ""))
    return out


def segments(parts: list[str]) -> list[str]:
    return parts[1::2]


def reassemble(parts: list[str], translated: list[str]) -> str:
    """Put translated segments back between the original separators."""
    segs = parts[1::2]
    if len(translated) != len(segs):
        raise ValueError(f"{len(translated)} translations for {len(segs)} segments")
    out = [parts[0]]
    for i, t in enumerate(translated):
        out.append(t)
        out.append(parts[2 * i + 2])
    return "".join(out)


# ---------------------------------------------------------------------------------------------- gates
def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in t if ch.isalnum())


def letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def copy_similarity(a: str, b: str) -> float:
    """Similarity of two texts in [0, 1] after case/punctuation/space folding: 1.0 for equal texts,
    else the Dice coefficient of character trigrams (fast, order-aware enough for near copies)."""
    na, nb = _norm(a), _norm(b)
    if na == nb:
        return 1.0
    if len(na) < 3 or len(nb) < 3:
        return 0.0

    def grams(s: str) -> dict[str, int]:
        g: dict[str, int] = {}
        for i in range(len(s) - 2):
            k = s[i : i + 3]
            g[k] = g.get(k, 0) + 1
        return g

    ga, gb = grams(na), grams(nb)
    inter = sum(min(v, gb.get(k, 0)) for k, v in ga.items())
    return 2.0 * inter / (sum(ga.values()) + sum(gb.values()))


def length_ratio(source: str, output: str) -> float:
    """Characters of the output over characters of the source (whitespace ignored)."""
    s = len(_WS.sub("", source))
    o = len(_WS.sub("", output))
    return o / s if s else (0.0 if o == 0 else float("inf"))


def repetition(
    text: str, max_n: int = 4, min_repeats: int = 4, min_tokens: int = 20, min_distinct: float = 0.3
) -> str | None:
    """Describe a generation loop in ``text``, or return None.

    Flags (1) a word n-gram repeated ``min_repeats`` times in a row (n <= ``max_n``; one time fewer for
    units of up to ``2 * max_n`` words), (2) for texts of
    ``min_tokens`` words or more, a share of distinct word trigrams below ``min_distinct``, and (3) for
    text written without spaces (Chinese, Japanese, Thai), a character unit of 1-10 characters
    repeated ``min_repeats + 2`` times in a row."""
    toks = text.split()
    for n in range(1, 2 * max_n + 1):
        need = min_repeats if n <= max_n else max(2, min_repeats - 1)  # long units: one repeat fewer
        i = 0
        while i + n * need <= len(toks):
            unit = toks[i : i + n]
            k = 1
            while toks[i + k * n : i + (k + 1) * n] == unit:
                k += 1
            if k >= need and any(ch.isalnum() for t in unit for ch in t):
                return f"'{' '.join(unit)}' x{k}"
            i += 1
    if len(toks) >= min_tokens:
        tri = [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
        distinct = len(set(tri)) / len(tri)
        if distinct < min_distinct:
            return f"{distinct:.2f} distinct word trigrams"
    if len(toks) <= 3 and len(text) >= 20:
        m = re.search(r"(\w.{0,9}?)\1{" + str(min_repeats + 1) + ",}", text)
        if m:
            return f"'{m.group(1)}' x{len(m.group()) // len(m.group(1))}"
    return None
