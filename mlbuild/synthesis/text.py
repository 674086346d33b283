"""Text helpers of query synthesis: words, n-grams, the longest shared run of words, and parsing what
the model wrote (one call with both labels, or one question line after its header)."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_SUMMARY_LABEL = re.compile(r"^\s*(?:\*\*)?Summary\s*:\s*(?:\*\*)?", re.IGNORECASE)
# marks that end a question: Latin, full-width, Arabic, Greek (U+037E; Greek text often has a plain ';',
# accepted for Greek only), Armenian, Ethiopic
QUESTION_END = "?？؟\u037e՞፧"


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def normalize_query(text: str) -> str:
    return " ".join(words(text))


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words shared by ``a`` and ``b``."""
    if not a or not b:
        return 0
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def trigrams(text: str) -> set[str]:
    s = f"  {normalize_query(text)}  "
    return {s[i : i + 3] for i in range(len(s) - 2)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def clip_words(text: str, n: int) -> str:
    parts = " ".join(str(text).split()).split(" ")
    return " ".join(parts[:n]) + (" ..." if len(parts) > n else "")


def question_pattern(label: str | None = None) -> re.Pattern[str]:
    """A ``Question ...:`` line (any ``Question`` label, or ``label`` itself), with its text in group 1."""
    alt = r"Question\b[^:\n]*" + (f"|{re.escape(label)}" if label and label != "Question" else "")
    return re.compile(rf"(?:^|\n)[ \t]*(?:\*\*)?(?:{alt})[ \t]*:[ \t]*(?:\*\*)?[ \t]*(.*)", re.IGNORECASE)


_QUESTION = question_pattern()


def parse_generation(text: str, label: str | None = None) -> tuple[str, str]:
    """(summary, query) from one call that continues after ``Summary:`` and writes a question line
    (``Question ...:`` or ``label:``); empty strings when absent."""
    m = (question_pattern(label) if label else _QUESTION).search(text)
    if m is None:
        return _SUMMARY_LABEL.sub("", text.strip()).strip(), ""
    summary = _SUMMARY_LABEL.sub("", text[: m.start()].strip()).strip()
    query = m.group(1).split("\n")[0].strip().strip("*").strip()
    return " ".join(summary.split()), " ".join(query.split())


def parse_line(text: str) -> str:
    """The first line of a continuation (a summary written after ``Summary:``), spaces collapsed."""
    return " ".join(text.strip().split("\n")[0].split())


def parse_question(text: str) -> str:
    """The question a model wrote after its header: the first line, up to its first question mark (the
    end of the question: a second question on the same line is dropped)."""
    line = parse_line(text).strip("*").strip()
    for i, ch in enumerate(line):
        if ch in QUESTION_END:
            return line[: i + 1]
    return line
