"""Character spans kept beside the text, and the text surgery projection needs.

- :class:`Span` ``(start, end, label)``: half-open character offsets into a text; a column of spans is a
  polars ``list[struct{start, end, label}]`` (:data:`SPANS_DTYPE`).
- Offsets <-> BIO: :func:`join_tokens` (tokens -> text + token offsets), :func:`bio_to_spans`,
  :func:`spans_to_bio` (exact both ways when spans sit on token boundaries), :func:`tokenize`.
- Markers: :func:`insert_markers` wraps each span in numbered markers (``[1]..[/1]`` or ``<a>..</a>``),
  escaping literal text that looks like a marker; :func:`repair_markers` undoes what MT does to markers
  (split tags, stray and lost spaces, punctuation pulled inside a span, markers moved around articles);
  :func:`extract_markers` removes them, computes target offsets and classifies failures
  (``missing_marker``, ``duplicated_marker``, ``wrong_order``, ``crossed_spans``, ``empty_span``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

SPAN_STRUCT = pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.Utf8})
SPANS_DTYPE = pl.List(SPAN_STRUCT)

# failure categories, in the order a row is classified (the first that applies names the row)
FAILURES = ("missing_marker", "duplicated_marker", "wrong_order", "crossed_spans", "empty_span")


class SpanError(ValueError):
    """Spans that do not fit their text or tokens."""


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    label: str = ""

    def text(self, s: str) -> str:
        return s[self.start : self.end]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}


def to_spans(value: Any) -> list[Span]:
    """A column value (list of dicts, list of (start, end, label) tuples, or None) -> spans."""
    if value is None:
        return []
    out = []
    for v in value:
        if isinstance(v, Span):
            out.append(v)
        elif isinstance(v, dict):
            out.append(Span(int(v["start"]), int(v["end"]), str(v.get("label") or "")))
        else:
            s, e, *rest = v
            out.append(Span(int(s), int(e), str(rest[0]) if rest else ""))
    return out


def to_records(spans: Iterable[Span] | None) -> list[dict[str, Any]] | None:
    return None if spans is None else [s.as_dict() for s in spans]


def spans_series(name: str, values: Sequence[Iterable[Span] | None]) -> pl.Series:
    return pl.Series(name, [to_records(v) for v in values], dtype=SPANS_DTYPE)


def check_spans(text: str, spans: Sequence[Span]) -> str | None:
    """Return a problem with ``spans`` against ``text`` (out of range, empty, crossing), or None."""
    for s in spans:
        if not 0 <= s.start < s.end <= len(text):
            return f"span ({s.start}, {s.end}, {s.label!r}) is empty or outside a text of {len(text)} characters"
    if crossing(spans):
        return "spans cross (overlap without nesting)"
    return None


def crossing(spans: Sequence[Span]) -> bool:
    """True when two spans overlap without one containing the other."""
    ss = sorted(spans, key=lambda s: (s.start, -s.end))
    for i, a in enumerate(ss):
        for b in ss[i + 1 :]:
            if b.start >= a.end:
                break
            if b.end > a.end:
                return True
    return False


# ---------------------------------------------------------------------------------------------- tokens / BIO

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[tuple[int, int]]:
    """Word and punctuation tokens as character offsets (for texts that arrive without tokens)."""
    return [m.span() for m in _TOKEN.finditer(text)]


def join_tokens(tokens: Sequence[str], sep: str = " ") -> tuple[str, list[tuple[int, int]]]:
    """Tokens -> text joined by ``sep`` and each token's (start, end) in it."""
    offsets, pos = [], 0
    for i, t in enumerate(tokens):
        if i:
            pos += len(sep)
        offsets.append((pos, pos + len(t)))
        pos += len(t)
    return sep.join(tokens), offsets


def bio_to_spans(tags: Sequence[str], offsets: Sequence[tuple[int, int]]) -> list[Span]:
    """BIO (IOB2; IOB1 and a stray ``I-`` after ``O`` are read as a start) tags -> character spans."""
    if len(tags) != len(offsets):
        raise SpanError(f"{len(tags)} tags for {len(offsets)} tokens")
    spans: list[Span] = []
    cur: list[Any] | None = None  # [start, end, label]
    for tag, (s, e) in zip(tags, offsets):
        tag = tag or "O"
        if tag == "O":
            if cur:
                spans.append(Span(*cur))
            cur = None
            continue
        if len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES":
            raise SpanError(f"not a BIO tag: {tag!r}")
        kind, label = tag[0], tag[2:]
        if kind in "BS" or cur is None or cur[2] != label:
            if cur:
                spans.append(Span(*cur))
            cur = [s, e, label]
        else:
            cur[1] = e
        if kind in "ES":
            spans.append(Span(*cur))
            cur = None
    if cur:
        spans.append(Span(*cur))
    return spans


def normalize_bio(tags: Sequence[str]) -> list[str]:
    """IOB1/IOBES/stray ``I-`` -> IOB2 (what :func:`spans_to_bio` writes)."""
    _, offs = join_tokens(["x"] * len(tags))
    return spans_to_bio(bio_to_spans(tags, offs), offs)


def spans_to_bio(spans: Sequence[Span], offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Character spans -> IOB2 tags over tokens. Each span must start at a token start and end at a
    token end, and spans must not overlap (BIO has one label per token); otherwise :class:`SpanError`."""
    tags = ["O"] * len(offsets)
    starts = {s: i for i, (s, _) in enumerate(offsets)}
    ends = {e: i for i, (_, e) in enumerate(offsets)}
    for sp in sorted(spans):
        if sp.start not in starts or sp.end not in ends:
            raise SpanError(f"span ({sp.start}, {sp.end}, {sp.label!r}) does not sit on token boundaries")
        i, j = starts[sp.start], ends[sp.end]
        if j < i or any(t != "O" for t in tags[i : j + 1]):
            raise SpanError(f"span ({sp.start}, {sp.end}, {sp.label!r}) overlaps another span")
        tags[i] = f"B-{sp.label}"
        for k in range(i + 1, j + 1):
            tags[k] = f"I-{sp.label}"
    return tags


def snap_to_tokens(spans: Sequence[Span], offsets: Sequence[tuple[int, int]]) -> list[Span]:
    """Widen each span to the tokens it touches (for BIO output of a text tokenized after projection)."""
    out = []
    for sp in spans:
        inside = [(s, e) for s, e in offsets if s < sp.end and e > sp.start]
        out.append(Span(inside[0][0], inside[-1][1], sp.label) if inside else sp)
    return out


# ---------------------------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class MarkerStyle:
    """How numbered markers look. ``brackets``: ``[1]..[/1]``; ``xml``: ``<a>..</a>``."""

    name: str

    def open(self, i: int) -> str:
        return f"[{i}]" if self.name == "brackets" else f"<{_xml_name(i)}>"

    def close(self, i: int) -> str:
        return f"[/{i}]" if self.name == "brackets" else f"</{_xml_name(i)}>"

    @property
    def pattern(self) -> re.Pattern:
        """A tolerant pattern for markers as MT leaves them (inner spaces, ``</ a>``, ``[ /1 ]``)."""
        return _BRACKET if self.name == "brackets" else _XML

    def index(self, name: str) -> int | None:
        if self.name == "brackets":
            return int(name)
        return _xml_index(name)


_BRACKET = re.compile(r"\[\s*(/?)\s*(\d{1,3})\s*\]")
_XML = re.compile(r"<\s*(/?)\s*([a-z]{1,2})\s*>", re.IGNORECASE)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
STYLES = {"brackets": MarkerStyle("brackets"), "xml": MarkerStyle("xml")}


def _xml_name(i: int) -> str:
    i -= 1
    return _LETTERS[i] if i < 26 else _LETTERS[i // 26 - 1] + _LETTERS[i % 26]


def _xml_index(name: str) -> int | None:
    name = name.lower()
    if len(name) == 1:
        return _LETTERS.index(name) + 1
    return (_LETTERS.index(name[0]) + 1) * 26 + _LETTERS.index(name[1]) + 1


def style(name: str) -> MarkerStyle:
    if name not in STYLES:
        raise ValueError(f"unknown marker style {name!r} (known: {', '.join(STYLES)})")
    return STYLES[name]


# literal text that would read as a marker is escaped before translation and restored after
_XML_ESC = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_BR_OPEN, _BR_CLOSE = "⟦", "⟧"


def escape(text: str, st: MarkerStyle) -> str:
    if st.name == "xml":
        for a, b in _XML_ESC:
            text = text.replace(a, b)
        return text
    return _BRACKET.sub(lambda m: _BR_OPEN + m.group(0)[1:-1] + _BR_CLOSE, text)


def _unescape_pattern(st: MarkerStyle) -> tuple[re.Pattern, dict[str, str]]:
    if st.name == "xml":
        table = {b: a for a, b in _XML_ESC}
        return re.compile("|".join(re.escape(b) for _, b in reversed(_XML_ESC))), table
    return re.compile(f"[{_BR_OPEN}{_BR_CLOSE}]"), {_BR_OPEN: "[", _BR_CLOSE: "]"}


def insert_markers(text: str, spans: Sequence[Span], st: MarkerStyle) -> str:
    """Wrap span ``i`` (1-based, in the given order) in ``st.open(i)`` .. ``st.close(i)``; literal text
    that looks like a marker is escaped. Spans may nest but must not cross."""
    problem = check_spans(text, spans)
    if problem:
        raise SpanError(problem)
    events = []  # (pos, order key, marker)
    for i, sp in enumerate(spans, start=1):
        events.append((sp.start, 1, -sp.end, st.open(i)))
        events.append((sp.end, 0, -sp.start, st.close(i)))
    events.sort()
    out, prev = [], 0
    for pos, _, _, marker in events:
        out.append(escape(text[prev:pos], st))
        out.append(marker)
        prev = pos
    out.append(escape(text[prev:], st))
    return "".join(out)


# articles per language (internal codes), for the "markers moved around articles" repair
ARTICLES: dict[str, tuple[str, ...]] = {
    "eng": ("the", "a", "an"),
    "por": ("o", "a", "os", "as", "um", "uma", "uns", "umas"),
    "spa": ("el", "la", "los", "las", "un", "una", "unos", "unas"),
    "fra": ("le", "la", "les", "l'", "un", "une", "des"),
    "ita": ("il", "lo", "la", "i", "gli", "le", "l'", "un", "uno", "una"),
    "cat": ("el", "la", "els", "les", "l'", "un", "una"),
    "deu": ("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer"),
    "nld": ("de", "het", "een"),
}
_NO_SPACE_SCRIPTS = ("Hani", "Hans", "Hant", "Jpan", "Thai", "Khmr", "Laoo", "Mymr")
_TRAIL_PUNCT = ".,;:!?"


@dataclass
class SourceSpanInfo:
    """What the source says about a span's surroundings, for repairs."""

    space_before: bool
    space_after: bool
    ends_with_punct: bool
    starts_with_article: bool
    first_word: str = ""

    @classmethod
    def of(cls, text: str, sp: Span, lang: str | None) -> SourceSpanInfo:
        inner = text[sp.start : sp.end]
        first = inner.split(maxsplit=1)[0].lower() if inner.split() else ""
        arts = ARTICLES.get((lang or "").split("_")[0], ())
        return cls(
            space_before=sp.start == 0 or text[sp.start - 1].isspace(),
            space_after=sp.end == len(text) or text[sp.end].isspace() or text[sp.end] in _TRAIL_PUNCT,
            ends_with_punct=bool(inner) and inner[-1] in _TRAIL_PUNCT,
            starts_with_article=first in arts,
            first_word=first,
        )


def repair_markers(
    marked: str,
    st: MarkerStyle,
    info: Sequence[SourceSpanInfo],
    tgt_lang: str | None = None,
    src_lang: str | None = None,
) -> tuple[str, list[str]]:
    """Fix what MT does to markers in ``marked`` (a translation with markers); return the repaired text
    and the names of the repairs applied (``split_marker``, ``stray_space``, ``lost_space``,
    ``punctuation_moved``, ``article_moved``). ``info[i-1]`` describes source span ``i``."""
    repairs: list[str] = []
    o, c = st.open, st.close

    def canon(m: re.Match) -> str:
        idx = st.index(m.group(2))
        return (c(idx) if m.group(1) else o(idx)) if idx is not None else m.group(0)

    fixed = st.pattern.sub(canon, marked)
    if fixed != marked:
        repairs.append("split_marker")
    text = fixed
    n = len(info)
    no_space = any(tgt_lang and tgt_lang.endswith(s) for s in _NO_SPACE_SCRIPTS)
    arts = ARTICLES.get((tgt_lang or "").split("_")[0], ())
    for i in range(1, n + 1):
        inf = info[i - 1]
        ot, ct = o(i), c(i)
        op, cl = re.escape(ot), re.escape(ct)
        before = text
        # stray spaces inside the markers: "[1] João" -> " [1]João"; "Inc. [/1]" -> "Inc.[/1] "
        text = re.sub(rf"(\s*){op}\s+", lambda m, ot=ot: (" " if m.group(1) else "") + ot, text)
        text = re.sub(rf"\s+{cl}(\s*)", lambda m, ct=ct: ct + (" " if m.group(1) else ""), text)
        if text != before:
            repairs.append("stray_space")
        if not no_space:
            before = text
            # lost spaces: "visited[2]China" -> "visited [2]China" when the source had a space there
            if inf.space_before:
                text = re.sub(rf"(\w){op}", lambda m, ot=ot: m.group(1) + " " + ot, text)
            if inf.space_after:
                text = re.sub(rf"{cl}(\w)", lambda m, ct=ct: ct + " " + m.group(1), text)
            if text != before:
                repairs.append("lost_space")
        if not inf.ends_with_punct:
            before = text
            # punctuation pulled inside: "[1]John,[/1]" -> "[1]John[/1],"
            text = re.sub(rf"([{re.escape(_TRAIL_PUNCT)}]+){cl}", lambda m, ct=ct: ct + m.group(1), text)
            if text != before:
                repairs.append("punctuation_moved")
        if arts:
            before = text
            alt = "|".join(re.escape(a) for a in sorted(arts, key=len, reverse=True))
            if not inf.starts_with_article:
                # "[2]a Universidade[/2]" for a source span without article -> "a [2]Universidade[/2]"
                text = re.sub(
                    rf"{op}({alt})(\s+|(?<=')\s*)(?=\w)",
                    # a word the source span also begins with is part of a name ("Los Angeles"), not an article
                    lambda m, ot=ot, fw=inf.first_word: (
                        m.group(0) if m.group(1).lower() == fw else m.group(1) + m.group(2) + ot
                    ),
                    text,
                    flags=re.IGNORECASE,
                )
            else:
                # "the [2]University" when the source span began with its article -> "[2]the University"
                text = re.sub(
                    rf"(?<![\w'])({alt})(\s+){op}",
                    lambda m, ot=ot: ot + m.group(1) + m.group(2),
                    text,
                    flags=re.IGNORECASE,
                )
            if text != before:
                repairs.append("article_moved")
    return text, list(dict.fromkeys(repairs))


@dataclass
class Extraction:
    text: str  # the translation without markers
    spans: list[Span | None]  # target span per source span (None when it failed)
    status: str  # "ok" or a failure category
    problems: list[str] = field(default_factory=list)  # every problem found, "category: detail"


def extract_markers(
    marked: str, st: MarkerStyle, labels: Sequence[str], *, was_escaped: bool = True, source_nested: bool = False
) -> Extraction:
    """Remove markers from ``marked``; compute the target span of each of ``len(labels)`` source spans.

    A row is ``ok`` only when each span has exactly one start and one end, start < end, and no spans
    cross (nesting is allowed when the source spans nest). Failures are classified (see
    :data:`FAILURES`); the first category found names the row, ``problems`` lists all."""
    n = len(labels)
    pieces: list[str] = []
    pos = 0
    clean_len = 0
    opens: dict[int, list[int]] = {}
    closes: dict[int, list[int]] = {}
    order: list[tuple[str, int]] = []
    problems: list[str] = []
    last = ""  # the last character of the clean text so far
    for m in st.pattern.finditer(marked):
        chunk = marked[pos : m.start()]
        # collapse the whitespace a removed marker leaves doubled
        if pos and chunk[:1].isspace() and last.isspace():
            chunk = chunk.lstrip()
        pieces.append(chunk)
        clean_len += len(chunk)
        last = chunk[-1:] or last
        pos = m.end()
        idx = st.index(m.group(2))
        if idx is None or not 1 <= idx <= n:
            problems.append(f"duplicated_marker: unknown marker {m.group(0)!r}")
            continue
        (closes if m.group(1) else opens).setdefault(idx, []).append(clean_len)
        order.append(("close" if m.group(1) else "open", idx))
    tail = marked[pos:]
    if pos and tail[:1].isspace() and last.isspace():
        tail = tail.lstrip()
    pieces.append(tail)
    clean = "".join(pieces)
    spans: list[Span | None] = [None] * n
    for i in range(1, n + 1):
        no, nc = len(opens.get(i, [])), len(closes.get(i, []))
        if no == 0 or nc == 0:
            problems.append(f"missing_marker: span {i} has {no} start and {nc} end markers")
            continue
        if no > 1 or nc > 1:
            problems.append(f"duplicated_marker: span {i} has {no} start and {nc} end markers")
            continue
        s, e = opens[i][0], closes[i][0]
        if order.index(("close", i)) < order.index(("open", i)):
            problems.append(f"wrong_order: the end marker of span {i} comes before its start")
            continue
        # whitespace at the edges belongs outside the span
        while s < e and clean[s].isspace():
            s += 1
        while e > s and clean[e - 1].isspace():
            e -= 1
        if s >= e:
            problems.append(f"empty_span: span {i} is empty")
            continue
        spans[i - 1] = Span(s, e, labels[i - 1])
    good = [sp for sp in spans if sp is not None]
    if crossing(good):
        problems.append("crossed_spans: target spans cross")
    elif not source_nested and any(a is not b and a.start <= b.start and b.end <= a.end for a in good for b in good):
        problems.append("crossed_spans: target spans nest where the source spans did not")
    # strip the whole text's edges and restore escaped literal text, mapping offsets
    clean, spans = _strip_edges(clean, spans)
    if was_escaped:
        pat, table = _unescape_pattern(st)
        clean, spans = _map_sub(clean, spans, pat, lambda m: table[m.group(0)])
    status = "ok"
    for cat in FAILURES:
        if any(p.startswith(cat + ":") for p in problems):
            status = cat
            break
    if status != "ok":
        spans = [None] * n if status == "crossed_spans" else spans
    return Extraction(clean, spans, status, problems)


def _strip_edges(text: str, spans: list[Span | None]) -> tuple[str, list[Span | None]]:
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    out = []
    for sp in spans:
        if sp is None:
            out.append(None)
        else:
            s = min(max(sp.start - lead, 0), len(stripped))
            e = min(max(sp.end - lead, 0), len(stripped))
            out.append(Span(s, e, sp.label))
    return stripped, out


def _map_sub(text: str, spans: list[Span | None], pat: re.Pattern, repl) -> tuple[str, list[Span | None]]:
    """``pat.sub(repl, text)``, carrying span offsets along (a boundary inside a match moves to its edge)."""
    pieces, shifts, prev, delta = [], [], 0, 0  # shifts: (old_end, cumulative delta after it)
    for m in pat.finditer(text):
        r = repl(m)
        pieces.append(text[prev : m.start()])
        pieces.append(r)
        delta += len(r) - (m.end() - m.start())
        shifts.append((m.start(), m.end(), delta, len(r)))
        prev = m.end()
    if not shifts:
        return text, spans
    pieces.append(text[prev:])

    def move(p: int, is_end: bool) -> int:
        d = 0
        for s, e, cum, rl in shifts:
            if p >= e:
                d = cum
            elif p > s:  # inside a match
                base = s + (cum - (rl - (e - s)))
                return base + (rl if is_end else 0)
            else:
                break
        return p + d

    out = [None if sp is None else Span(move(sp.start, False), move(sp.end, True), sp.label) for sp in spans]
    return "".join(pieces), out
