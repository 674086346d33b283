"""The judge's prompt: a versioned Jinja template (``name.vN.j2``) rendered in the sandbox.

Variables a template gets: ``query``, ``passage`` (cut to ``max_passage_words`` words), ``query_language``
and ``passage_language`` (English names, or None when unknown), ``completion`` (True when the prompt is
sent for completion, to a base model or a completions endpoint: the template then ends with the answer's
prefix, ``##final score:``, so the model's first token is the grade)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .. import langs
from ..pipeline.cache import hash_text

_VERSION = re.compile(r"\.(v\d+)$")


def clip_words(text: str, n: int) -> str:
    parts = " ".join(str(text).split()).split(" ")
    return " ".join(parts[:n]) + (" ..." if len(parts) > n else "")


@lru_cache(maxsize=1024)
def language_name(code: str | None) -> str | None:
    if not code or not langs.is_valid(code):
        return None
    return langs.display_name(langs.normalize(code))


class JudgePrompt:
    def __init__(self, path: Path, where: str = "template", max_passage_words: int = 400, completion: bool = True):
        from ..templating import compile_file

        self.path = Path(path)
        self.source = self.path.read_text(encoding="utf-8")
        self.template = compile_file(self.path, where)
        self.name = self.path.name.removesuffix(".j2")
        m = _VERSION.search(self.name)
        self.version = m.group(1) if m else "unversioned"
        self.sha256 = hash_text(self.source)
        self.max_passage_words = max_passage_words
        self.completion = completion

    def render(self, query: str, passage: str, query_lang: str | None = None, passage_lang: str | None = None) -> str:
        text = self.template.render(
            query=" ".join(str(query).split()),
            passage=clip_words(passage, self.max_passage_words),
            query_language=language_name(query_lang),
            passage_language=language_name(passage_lang),
            completion=self.completion,
        )
        return text.rstrip(" \n") if self.completion else text.strip()
