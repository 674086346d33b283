"""The filters of query synthesis, each a pure function over lists (one entry per generated query) that
returns a :class:`~mlbuild.pipeline.filters.Verdict`; the stages combine them with
:func:`~mlbuild.pipeline.filters.first_failure` (in the order below) and apply ``on_fail`` with
:func:`~mlbuild.pipeline.filters.apply`.

=====================  ==========================================================================
reason                 when
=====================  ==========================================================================
parse_no_query         the model wrote no question (structural: always dropped)
parse_no_summary       the summary has fewer than ``min_summary_words`` words
query_truncated        the question does not end with a question mark (cut by the token budget)
query_dangling         it ends with a question mark after a word no question ends on ("What was the?")
query_too_short/long   fewer than ``min_query_words`` / more than ``max_query_words`` words
template_echo          a template label, an exemplar's question, its topic words, or a long run of it
copied_from_passage    a long verbatim run of the passage's words
wrong_language         language ID disagrees with the target language
duplicate_exact/near   the same (or a near) question for the same passage and language
roundtrip_failed       the question's own passage ranks below ``roundtrip_top_k`` in the corpus
=====================  ==========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..pipeline.filters import Verdict
from .prompts import Exemplar
from .text import QUESTION_END, jaccard, longest_common_run, normalize_query, trigrams, words

_LABELS = re.compile(r"\b(?:passage|summary|question|title)\s*(?:\([^)]*\)\s*)?:", re.IGNORECASE)

# Words a question cannot end on, even before its question mark: articles, determiners, conjunctions,
# and (outside English, which strands prepositions: "What is it made of?") prepositions.
DANGLING = {
    "eng": {"the", "a", "an", "and", "or", "but", "nor", "whose", "my", "your", "his", "their", "our", "its", "than"},
    "spa": {"el", "la", "los", "las", "un", "una", "unos", "unas", "y", "e", "o", "u", "ni", "de", "del", "al", "a"}
    | {"en", "con", "por", "para", "sin", "sobre", "entre", "hacia", "hasta", "desde", "que", "su", "sus", "mi"},
    "por": {"o", "a", "os", "as", "um", "uma", "uns", "umas", "e", "ou", "nem", "de", "do", "da", "dos", "das"}
    | {"em", "no", "na", "nos", "nas", "com", "por", "para", "sem", "sobre", "entre", "que", "seu", "sua"},
    "fra": {"le", "la", "les", "l", "un", "une", "des", "et", "ou", "ni", "de", "du", "d", "au", "aux", "en"}
    | {"dans", "avec", "pour", "par", "sans", "sur", "entre", "que", "qu", "son", "sa", "ses"},
    "ita": {"il", "lo", "la", "i", "gli", "le", "l", "un", "uno", "una", "e", "o", "di", "del", "della", "dei"}
    | {"in", "con", "per", "su", "tra", "fra", "che", "suo", "sua"},
    "deu": {"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines"}
    | {"und", "oder", "aber", "mit", "von", "zu", "für", "auf", "in", "im", "am"},
}


def parse_failures(
    summaries: Sequence[str],
    queries: Sequence[str],
    min_summary_words: int,
    no_query_detail: str = "the model wrote no question",
) -> Verdict:
    """``parse_no_query``: no question; ``parse_no_summary``: a summary shorter than ``min_summary_words``."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for s, q in zip(summaries, queries):
        if not q:
            reasons.append("parse_no_query")
            details.append(no_query_detail)
        elif len(s.split()) < min_summary_words:
            reasons.append("parse_no_summary")
            details.append(f"summary of {len(s.split())} words")
        else:
            reasons.append(None)
            details.append(None)
    return Verdict(reasons, details)


def unfinished(queries: Sequence[str], targets: Sequence[str]) -> Verdict:
    """``query_truncated``: no question mark at the end (the model ran out of tokens or stopped mid-way:
    "What was the"); ``query_dangling``: a question mark right after a word no question ends on, from
    :data:`DANGLING` for the target language ("What was the?"). Empty queries pass (see parse)."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for q, t in zip(queries, targets):
        lang = t.split("_")[0]
        q = q.strip().rstrip("*»\"'”’)").rstrip()
        ends = QUESTION_END + (";" if lang == "ell" else "")
        ws = words(q)
        last = ws[-1] if ws else ""
        if not q:
            reasons.append(None)
            details.append(None)
        elif q[-1] not in ends:
            reasons.append("query_truncated")
            details.append(f"no question mark at the end (last word {last!r})")
        elif last in DANGLING.get(lang, ()):
            reasons.append("query_dangling")
            details.append(f"ends on {last!r}")
        else:
            reasons.append(None)
            details.append(None)
    return Verdict(reasons, details)


def query_length(queries: Sequence[str], min_words: int, max_words: int) -> Verdict:
    """``query_too_short`` / ``query_too_long`` in words (empty queries pass: see parse)."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for q in queries:
        n = len(q.split())
        if q and n < min_words:
            reasons.append("query_too_short")
            details.append(f"{n} words < {min_words}")
        elif n > max_words:
            reasons.append("query_too_long")
            details.append(f"{n} words > {max_words}")
        else:
            reasons.append(None)
            details.append(None)
    return Verdict(reasons, details)


def _echo(query: str, passage_words: set[str], exs: Sequence[Exemplar], target: str, topic, fraction: float):
    if _LABELS.search(query):
        return "the query holds a template label"
    qw = words(query)
    nq = normalize_query(query)
    for e in exs:
        eq = e.queries.get(target, "")
        if nq and nq == normalize_query(eq):
            return f"the query repeats exemplar {e.id}'s question"
        # topic words of the exemplar (its own words, 4+ characters, years included) the passage lacks
        own = topic.get(e.id, set())
        borrowed = sorted({w for w in qw if len(w) >= 4 and w not in passage_words and w in own})
        if len(borrowed) >= 2:
            return f"words from exemplar {e.id}: {', '.join(borrowed[:5])}"
        for text in (eq, e.passage, e.summary):
            run = longest_common_run(qw, words(text))
            if run >= 3 and run >= fraction * len(qw):
                return f"{run} of {len(qw)} words from exemplar {e.id}"
    return None


def template_echo(
    queries: Sequence[str],
    passages: Sequence[str],
    exemplars: Sequence[Sequence[Exemplar]],
    targets: Sequence[str],
    topic: dict[str, set[str]],
    echo_fraction: float,
) -> Verdict:
    """``template_echo``: the query holds a template label, equals an exemplar's question, borrows two or
    more topic words (4+ letters) of an exemplar that its passage lacks, or shares a run of 3+ words with
    an exemplar (question, passage or summary) covering ``echo_fraction`` of it. ``exemplars``: per
    query, those its prompt showed; ``topic``: :func:`~.prompts.topic_words` of the pool."""
    details = [
        _echo(q, set(words(p)), exs, t, topic, echo_fraction) if q else None
        for q, p, exs, t in zip(queries, passages, exemplars, targets)
    ]
    return Verdict(["template_echo" if d else None for d in details], details)


def copied_from_passage(
    queries: Sequence[str], passages: Sequence[str], max_copy_words: int, max_copy_fraction: float
) -> Verdict:
    """``copied_from_passage``: a verbatim run of ``max_copy_words`` passage words, or a run of 4+ words
    covering ``max_copy_fraction`` of the query."""
    reasons: list[str | None] = []
    details: list[str | None] = []
    for q, p in zip(queries, passages):
        qw = words(q)
        run = longest_common_run(qw, words(p))
        if run >= max_copy_words or (run >= 4 and run >= max_copy_fraction * len(qw)):
            reasons.append("copied_from_passage")
            details.append(f"{run} of {len(qw)} words verbatim from the passage")
        else:
            reasons.append(None)
            details.append(None)
    return Verdict(reasons, details)


def wrong_language(
    lid, queries: Sequence[str], targets: Sequence[str], min_score: float, families: dict
) -> tuple[Verdict, dict[str, int]]:
    """``wrong_language``: language ID (with the confusable-family and script checks of ``langid.v1``)
    says the query is not in its target language. Also returns the rule counts (accepted through a
    confusable family or the short-text rule)."""
    from ..models.lid import check_languages

    if not queries:
        return Verdict([]), {"confusable_accepted": 0, "short_text_accepted": 0}
    res = check_languages(lid, list(queries), list(targets), min_score=min_score, families=families)
    reasons = [None if ok else "wrong_language" for ok in res["ok"]]
    details = [None if ok else f"{r}: {d}" for ok, r, d in zip(res["ok"], res["reasons"], res["details"])]
    return Verdict(reasons, details), dict(res["counts"])


def near_duplicates(keys: Sequence[object], queries: Sequence[str], labels: Sequence[object], threshold: float):
    """``duplicate_exact`` / ``duplicate_near``: per key (a passage and language), a query equal to an
    earlier one after normalisation, or with character 3-gram Jaccard at or above ``threshold``; the
    detail names the earlier query by its ``labels`` entry. The first of a group is kept."""
    seen: dict[object, list[tuple[str, set[str], object]]] = {}
    reasons: list[str | None] = []
    details: list[str | None] = []
    for key, q, label in zip(keys, queries, labels):
        norm, grams = normalize_query(q), trigrams(q)
        reason = detail = None
        for other_norm, other_grams, other in seen.get(key, []):
            if norm == other_norm:
                reason, detail = "duplicate_exact", f"same as {other}"
                break
            sim = jaccard(grams, other_grams)
            if sim >= threshold:
                reason, detail = "duplicate_near", f"3-gram Jaccard {sim:.2f} with query {other}"
                break
        if reason is None:
            seen.setdefault(key, []).append((norm, grams, label))
        reasons.append(reason)
        details.append(detail)
    return Verdict(reasons, details)


def roundtrip(ranks: Sequence[int | None], checked: Sequence[bool], k: int) -> Verdict:
    """``roundtrip_failed``: a checked query whose own passage is not within the top ``k`` (``ranks``:
    the exact rank when within ``k``, None when lower or not checked: an own passage missing from the
    corpus is not checked)."""
    return Verdict.from_mask(
        [c and (r is None or r > k) for r, c in zip(ranks, checked)],
        "roundtrip_failed",
        [f"own passage not in the top {k}"] * len(ranks),
    )
