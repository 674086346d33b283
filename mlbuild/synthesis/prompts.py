"""Prompts of query synthesis: few-shot exemplars (loaded from JSONL, chosen per passage and target
language), the question header in each language, and the Jinja template rendered for each stage.

A template gets ``stage``:

- ``"summary"``: exemplars (passage, summary), then the passage; ends after ``Summary:``;
- ``"question"``: exemplars (passage, summary, header + question), the passage and the summary the model
  wrote; ends after the header (``Pregunta:`` for Spanish), so the model can only write the question;
- ``"pivot"``: exemplar question pairs (header + question in the passage's language, header + the same
  question in the target language), then the model's question; ends after the target header;
- ``"single"``: exemplars with questions, the passage; ends after ``Summary:`` (one call writes the
  summary and the question line: the ``summarize-then-ask.v1`` way).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .. import langs
from .text import clip_words, words

_TEMPLATE_VERSION = re.compile(r"\.(v\d+)$")

# "Question" in the language the question is asked in (ISO 639-3); other languages get "Question in <name>"
QUESTION_LABELS = {
    "eng": "Question",
    "spa": "Pregunta",
    "por": "Pergunta",
    "cat": "Pregunta",
    "glg": "Pregunta",
    "fra": "Question",
    "ita": "Domanda",
    "ron": "Întrebare",
    "deu": "Frage",
    "nld": "Vraag",
    "swe": "Fråga",
    "dan": "Spørgsmål",
    "nob": "Spørsmål",
    "fin": "Kysymys",
    "pol": "Pytanie",
    "ces": "Otázka",
    "rus": "Вопрос",
    "ukr": "Питання",
    "ell": "Ερώτηση",
    "tur": "Soru",
    "ind": "Pertanyaan",
    "vie": "Câu hỏi",
    "swh": "Swali",
    "arb": "سؤال",
    "ara": "سؤال",
    "heb": "שאלה",
    "hin": "प्रश्न",
    "jpn": "質問",
    "zho": "问题",
    "kor": "질문",
}


def question_label(lang: str) -> str:
    """The header of a question in ``lang``: ``Pregunta`` for Spanish, ``Question in Kyrgyz`` without one."""
    code = langs.normalize(lang)
    return QUESTION_LABELS.get(code.split("_")[0]) or f"Question in {langs.display_name(code)}"


def pivot_labels(source: str, target: str) -> tuple[str, str]:
    """Headers of a question pair; when both languages say ``Question``, each gets its language's name."""
    a, b = question_label(source), question_label(target)
    if a == b:
        return f"{a} ({langs.display_name(source)})", f"{b} ({langs.display_name(target)})"
    return a, b


@dataclass
class Exemplar:
    id: str
    lang: str
    passage: str
    summary: str
    queries: dict[str, str]
    title: str = ""


def load_exemplars(path: Path) -> list[Exemplar]:
    """JSONL lines ``{"lang", "passage", "summary", "queries": {lang: query}, "title"?, "id"?}``; a flat
    ``"query"`` (in ``query_lang``, default ``lang``) works too."""
    from ..errors import InputError

    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            lang = langs.normalize(rec["lang"])
            queries = dict(rec.get("queries") or {})
            if "query" in rec:
                queries[rec.get("query_lang", rec["lang"])] = rec["query"]
            queries = {langs.normalize(k): str(v) for k, v in queries.items()}
            if not queries:
                raise KeyError("queries")
            title = str(rec.get("title") or "")
            out.append(Exemplar(str(rec.get("id", n)), lang, str(rec["passage"]), str(rec["summary"]), queries, title))
        except json.JSONDecodeError as e:
            raise InputError(str(path), f"not JSON: {e.msg}", line=n) from None
        except KeyError as e:
            raise InputError(str(path), "missing field", line=n, field=str(e).strip("'")) from None
        except langs.UnknownLanguage as e:
            raise InputError(str(path), str(e), line=n, field="lang") from None
    return out


def _tiers(have: list[Exemplar], passage_lang: str, target: str) -> list[list[Exemplar]]:
    if passage_lang == target:
        return [[e for e in have if e.lang == target], [e for e in have if e.lang != target]]
    return [
        [e for e in have if e.lang == passage_lang],
        [e for e in have if e.lang not in (passage_lang, target)],
        [e for e in have if e.lang == target],
    ]


def _take(tiers: list[list[Exemplar]], k: int, rng: random.Random | None) -> list[Exemplar]:
    out: list[Exemplar] = []
    for t in tiers:
        t = list(t)
        if rng is not None:
            rng.shuffle(t)
        out += t
    return out[:k]


def pick_exemplars(
    pool: list[Exemplar], passage_lang: str, target: str, k: int, rng: random.Random | None = None
) -> list[Exemplar]:
    """Up to ``k`` exemplars with a query in ``target``: first those whose passage is in the passage's
    language, then other languages; monolingual prompts fall back to other languages' exemplars.
    ``rng`` shuffles within each tier (for a second or later query of the same passage)."""
    return _take(_tiers([e for e in pool if target in e.queries], passage_lang, target), k, rng)


def pick_pivot_exemplars(
    pool: list[Exemplar], source: str, target: str, k: int, rng: random.Random | None = None
) -> list[Exemplar]:
    """Up to ``k`` exemplars with a query in both ``source`` and ``target`` (a question pair), in the
    order of :func:`pick_exemplars`."""
    have = [e for e in pool if source in e.queries and target in e.queries]
    return _take(_tiers(have, source, target), k, rng)


def pick_summary_exemplars(pool: list[Exemplar], passage_lang: str, k: int) -> list[Exemplar]:
    """Up to ``k`` exemplars for the summary prompt (passage and summary only): those whose passage is in
    the passage's language first, then the others, in file order."""
    return ([e for e in pool if e.lang == passage_lang] + [e for e in pool if e.lang != passage_lang])[:k]


def topic_words(pool: list[Exemplar]) -> dict[str, set[str]]:
    """Per exemplar, its words found in no other exemplar (common words such as 'which' drop out)."""
    bags = {e.id: set(words(f"{e.title} {e.passage} {e.summary}")) for e in pool}
    df: dict[str, int] = {}
    for b in bags.values():
        for w in b:
            df[w] = df.get(w, 0) + 1
    return {k: {w for w in b if df[w] == 1} for k, b in bags.items()}


class PromptBuilder:
    """Renders the template (in jinja2's sandbox, :mod:`mlbuild.templating`: templates may come from user
    files) with exemplars; ``version`` comes from the file name (``name.v2.j2``)."""

    def __init__(self, template_path: Path, exemplars: list[Exemplar], max_passage_words: int = 250):
        from ..templating import compile_file

        self.path = template_path
        self.source = template_path.read_text(encoding="utf-8")
        self.template = compile_file(template_path, "template")  # sandboxed: the file may come from anyone
        stem = template_path.name.removesuffix(".j2")
        m = _TEMPLATE_VERSION.search(stem)
        self.name = stem
        self.version = m.group(1) if m else "unversioned"
        self.exemplars = exemplars
        self.max_passage_words = max_passage_words

    def render(
        self,
        passage: str,
        passage_lang: str,
        target: str,
        title: str = "",
        exemplars: list[Exemplar] | None = None,
        *,
        stage: str = "single",
        summary: str = "",
        source_query: str = "",
    ) -> str:
        """The prompt of one stage (see the module docstring); ``summary`` for ``question``, ``source_query``
        (the question in the passage's language) for ``pivot``."""
        exs = exemplars if exemplars is not None else []
        src_label, tgt_label = pivot_labels(passage_lang, target) if stage == "pivot" else ("", "")
        ctx_ex = [
            {
                "title": e.title,
                "passage": clip_words(e.passage, self.max_passage_words),
                "summary": e.summary,
                "query": e.queries.get(target, ""),
                "passage_language": langs.display_name(e.lang),
                "query_language": langs.display_name(target),
                "query_label": tgt_label or question_label(target),
                "source_query": e.queries.get(passage_lang, ""),
                "source_label": src_label,
            }
            for e in exs
        ]
        text = self.template.render(
            stage=stage,
            exemplars=ctx_ex,
            passage=clip_words(passage, self.max_passage_words),
            title=" ".join(str(title or "").split()),
            passage_language=langs.display_name(passage_lang),
            query_language=langs.display_name(target),
            query_label=tgt_label or question_label(target),
            summary=" ".join(summary.split()),
            source_query=" ".join(source_query.split()),
            source_label=src_label,
        )
        return text.rstrip(" \n")

    def check_staged(self) -> str | None:
        """Why this template cannot run staged generation (None when it can): the question stage must end
        with the summary it was given and the header, the pivot stage with the target header."""
        probe = "Xq7 probe summary"
        q = self.render("p", "eng_Latn", "spa_Latn", stage="question", summary=probe)
        if not q.endswith(f"{probe}\n{question_label('spa_Latn')}:"):
            return f"its question stage does not end with 'Summary: <summary>' and the header (it ends {q[-40:]!r})"
        p = self.render("p", "eng_Latn", "spa_Latn", stage="pivot", source_query=probe)
        if probe not in p or not p.endswith(f"{question_label('spa_Latn')}:"):
            return f"its pivot stage does not end with the question and the target header (it ends {p[-40:]!r})"
        return None
