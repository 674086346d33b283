"""``judge_relevance.v1``: an LLM grades (query, passage) pairs 0-3 with an UMBRELA-style prompt.

Grades: 0 = nothing to do with the query, 1 = related but no answer, 2 = holds an answer among other
things, 3 = devoted to the query with the exact answer (UMBRELA, arXiv:2406.06519). With ``samples`` > 1
(and ``temperature`` > 0) each pair is judged that many times, seeds ``seed``, ``seed + 1``, ...; the
grade is the majority (ties to the lower grade). A generation with no readable grade is *unparsed*.

Two input layouts, told apart by the type of ``passage_column``:

- **pairs** (a text column; the triplet layout ``query, positive, negative`` with ``passage_column =
  "negative"``): one judgment per row, written to ``grade_column``;
- **lists** (a list-of-texts column: n-tuple / listwise candidates): one judgment per candidate, written
  to ``grade_column`` as a list aligned with the candidates.

Two modes:

- ``negatives`` (mined negatives): a pair graded ``relevant_at`` or more is a false negative: the row
  goes to ``rejects/`` (``false_negative``); in a list the candidate is removed (with the same entries of
  ``aligned_columns``, e.g. ids or scores) and written to ``rejects/`` as ``<row_id>/c<j>`` with its
  ``candidate`` text; a row left with no candidate is rejected (``no_candidates_left``);
- ``qrels`` (graded judgments for new queries): every row is kept with its grades.

Unparsed judgments keep a null grade (``on_unparsed = "keep"``) or are dropped like false negatives
(``judge_unparsed``). Rows with an empty query or passage go to ``rejects/`` (``empty_query``,
``empty_passage``, ``no_candidates``); lists of other lengths than the candidates, ``misaligned``.

Reads: ``query_column``, ``passage_column`` [+ ``lang_column`` (default ``lang`` when present), a
``passage_lang`` column, ``reference_column``, ``aligned_columns``]. Writes: ``grade_column`` (and
``<grade_column>_votes`` with ``samples`` > 1).

Report (``reports/<id>.json|md``): grade distribution per language, false negatives, unparsed outputs,
vote agreement, tokens in/out per language (and cost with a ``price`` table), and, with a
``reference_column`` of known grades, Cohen's kappa (0-3, quadratic, binary) and the confusion table.

Parameters: see ``mlbuild steps judge_relevance.v1`` and ``docs/training-data.md``. Example::

    [[steps]]
    uses = "judge_relevance.v1"
    query_column = "query"
    passage_column = "negative"        # triplets from mine_negatives.v1
    engine = "openai"
    api = "chat"
    model = "Qwen/Qwen2.5-72B-Instruct"
    base_url = "http://127.0.0.1:8000/v1"
    price = { input = 0.15, output = 0.60 }   # per million tokens
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from .. import langs
from ..accounting import TokenCounter, Usage, check_price, load_counter, price_extra
from ..errors import RecipeError
from ..judging import report
from ..judging.engine import Judge, load_llm
from ..judging.grades import majority
from ..judging.prompt import JudgePrompt
from ..pipeline.base import Step, StepOutput, StepReport, concat_rejects, reject
from ..pipeline.params import param
from ..pipeline.registry import register
from ..resources import find_file

log = logging.getLogger(__name__)


@dataclass
class JudgeParams:
    query_column: str = param("query", doc="column with the query")
    passage_column: str = param("negative", doc="column to judge: a passage (text) or candidates (list of texts)")
    mode: Literal["negatives", "qrels"] = param(
        "negatives", doc="negatives: drop pairs graded relevant (false negatives); qrels: keep all, with grades"
    )
    relevant_at: int = param(2, doc="grades at or above this are relevant", ge=1, le=3)
    grade_column: str = param("grade", doc="output column with the grade (a list for list input)")
    aligned_columns: list[str] = param([], doc="list columns filtered like the candidates (ids, scores)")
    lang_column: str | None = param(None, doc="query language column for per-language stats (default: lang)")
    passage_lang: str | None = param(None, doc="the passages' language: a code or a column (shown in the prompt)")
    reference_column: str | None = param(None, doc="known grades (int, or a list for list input) to agree with")
    reference_relevant_at: int | None = param(
        None, doc="reference grades at or above this are relevant (default: relevant_at)", ge=0, le=1000
    )
    on_unparsed: Literal["keep", "drop"] = param("keep", doc="a judgment with no readable grade: keep or drop")
    engine: Literal["transformers", "openai"] = param("transformers", doc="LLM engine")
    model: str = param("gemma-3-270m", doc="packaged name, local folder or .gguf file, or Hub id", kind="path")
    gguf_file: str | None = param(None, doc="GGUF file inside a Hub repo or local folder (transformers engine)")
    base_url: str | None = param(None, doc="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (openai)")
    api: Literal["completions", "chat"] = param("chat", doc="openai engine: chat or completion API")
    api_key_env: str = param("OPENAI_API_KEY", doc="environment variable holding the API key", runtime=True)
    max_concurrency: int = param(8, doc="openai engine: requests in flight", runtime=True, ge=1, le=1024)
    timeout: float = param(120.0, doc="openai engine: seconds per request", runtime=True, gt=0.0, le=86_400.0)
    template: str = param("prompts/umbrela.v1.j2", doc="Jinja prompt template (name.vN.j2)", kind="file")
    max_passage_words: int = param(400, doc="passages are cut to this many words in the prompt", ge=1, le=100_000)
    samples: int = param(1, doc="judgments per pair; the grade is their majority", ge=1, le=32)
    temperature: float = param(0.0, doc="0 = greedy; > 0 to sample (needed for samples > 1)", ge=0.0, le=10.0)
    top_p: float = param(1.0, doc="nucleus sampling (with temperature > 0)", gt=0.0, le=1.0)
    seed: int | None = param(None, doc="seed of the first sample (default: the dataset seed)", ge=0, le=2**63 - 1)
    max_new_tokens: int = param(16, doc="tokens generated per judgment", ge=1, le=32_768)
    tokenizer: str | None = param(None, doc="tokenizer to count tokens with (openai engine)", kind="path")
    price: dict[str, Any] | None = param(None, doc="openai engine: { input, output, per = 1e6, currency = 'USD' }")
    batch_size: int = param(16, doc="prompts per generation batch", runtime=True, ge=1, le=100_000)
    device: str = param("auto", doc="auto, cpu, cuda", runtime=True)


@register("step")
class JudgeRelevance(Step):
    __doc__ = __doc__
    name = "judge_relevance.v1"
    Params = JudgeParams
    machine_generated_annotations = True
    task_categories = ("text-retrieval",)
    rows_per_shard = 256

    @classmethod
    def check(cls, params: JudgeParams, columns: list[str] | None) -> list[tuple[str, str]]:
        p = params
        out: list[tuple[str, str]] = []
        if p.engine == "openai" and not p.base_url:
            out.append(("base_url", "engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)"))
        if p.samples > 1 and p.temperature == 0:
            out.append(("samples", "a vote over greedy judgments repeats one answer: set temperature > 0 (e.g. 0.7)"))
        out += check_price(p.engine, p.price)
        if columns is not None:
            for name in ("lang_column", "reference_column"):
                c = getattr(p, name)
                if c and c not in columns:
                    out.append((name, f"no column {c!r} in the input (columns: {', '.join(columns)})"))
            pl_ = p.passage_lang
            if pl_ and not langs.is_valid(pl_) and pl_ not in columns:
                out.append(("passage_lang", f"{pl_!r} is neither a language code nor a column"))
        return out

    def input_columns(self) -> list[str]:
        p = self.params
        cols = [p.query_column, p.passage_column, *p.aligned_columns]
        cols += [c for c in (p.lang_column, p.reference_column) if c]
        if p.passage_lang and not langs.is_valid(p.passage_lang):
            cols.append(p.passage_lang)
        return list(dict.fromkeys(cols))

    def output_columns(self, columns: list[str]) -> list[str]:
        new = [self.params.grade_column] + ([self._votes_column()] if self.params.samples > 1 else [])
        return list(dict.fromkeys([*columns, *new]))

    def _votes_column(self) -> str:
        return f"{self.params.grade_column}_votes"

    # -- setup
    def _prompt(self) -> JudgePrompt:
        if getattr(self, "prompt", None) is None:
            p = self.params
            path = find_file(p.template, self.ctx.recipe_dir)
            if path is None:
                raise RecipeError([("template", f"file not found: {p.template}")])
            completion = p.engine == "transformers" or p.api == "completions"
            self.prompt = JudgePrompt(path, "template", p.max_passage_words, completion)
        return self.prompt

    def setup(self) -> None:
        p = self.params
        prompt = self._prompt()
        device = self.ctx.device if p.device == "auto" else p.device
        self.llm = load_llm(p, self.ctx.recipe_dir, device, self.ctx.quiet)
        self.ctx.record_model("judge", self.llm.id, self.llm.revision, engine=p.engine)
        tok = getattr(self.llm, "tokenizer", None)
        self.counter = (
            TokenCounter(tok, self.llm.id) if tok is not None else load_counter(p.tokenizer, self.ctx.recipe_dir)
        )
        self.seed = p.seed if p.seed is not None else self.ctx.seed
        self.ctx.extra["template"] = {"file": prompt.path.name, "version": prompt.version, "sha256": prompt.sha256}
        self.ctx.extra["seed"] = self.seed
        self.judge = Judge(self.llm, p, self.seed, prompt.completion, self.ctx.cache, self.name)
        self.ctx.extra.update(price_extra(p.price))  # the writer prices the tokens with it

    # -- jobs: one judgment per (row, candidate)
    def _jobs(self, batch: pl.DataFrame) -> tuple[bool, list[tuple[int, int, str, str]], dict[str, list[int]]]:
        """(list layout?, jobs (row, candidate index or -1, language, prompt), rows rejected by reason)."""
        p = self.params
        dtype = batch.schema[p.passage_column]
        listwise = isinstance(dtype, pl.List)
        if not listwise and dtype not in (pl.Utf8, pl.Null):
            where = f"{self.name} -> passage_column"
            raise RecipeError(
                [(where, f"column {p.passage_column!r} holds {dtype}: expected text or a list of texts")]
            )
        prompt = self._prompt()
        queries = batch[p.query_column].cast(pl.Utf8).fill_null("").to_list()
        passages = batch[p.passage_column].to_list()
        qlangs = self._langs(batch)
        plangs = self._passage_langs(batch)
        lists = {
            c: batch[c].to_list() for c in [*p.aligned_columns, *([p.reference_column] if p.reference_column else [])]
        }
        bad: dict[str, list[int]] = {}
        jobs: list[tuple[int, int, str, str]] = []
        for i, q in enumerate(queries):
            cands = passages[i] if listwise else [passages[i]]
            reason = "empty_query" if not q.strip() else None
            if reason is None and listwise and not any((c or "").strip() for c in cands or []):
                reason = "no_candidates"
            if reason is None and not listwise and not (cands[0] or "").strip():
                reason = "empty_passage"
            if reason is None and listwise:
                reason = self._misaligned(lists, i, len(cands))
            if reason is not None:
                bad.setdefault(reason, []).append(i)
                continue
            for j, c in enumerate(cands):
                if (c or "").strip():
                    jobs.append((i, j if listwise else -1, qlangs[i], prompt.render(q, c, qlangs[i], plangs[i])))
        return listwise, jobs, bad

    @staticmethod
    def _misaligned(lists: dict[str, list[Any]], i: int, n: int) -> str | None:
        """'misaligned' when a list column the candidates go with has another length (or is not a list)."""
        for values in lists.values():
            v = values[i]
            if v is not None and (not isinstance(v, list) or len(v) != n):
                return "misaligned"
        return None

    def _langs(self, batch: pl.DataFrame) -> list[str]:
        c = self.params.lang_column or ("lang" if "lang" in batch.columns else None)
        if c is None:
            return ["und"] * batch.height
        return [str(v) if v else "und" for v in batch[c].cast(pl.Utf8).to_list()]

    def _passage_langs(self, batch: pl.DataFrame) -> list[str | None]:
        v = self.params.passage_lang
        if v and v in batch.columns:
            return batch[v].cast(pl.Utf8).to_list()
        return [v] * batch.height

    # -- the step
    def process(self, batch: pl.DataFrame) -> StepOutput:
        p = self.params
        listwise, jobs, bad = self._jobs(batch)
        usage = Usage(self.counter)
        votes, raw = self.judge.run([j[3] for j in jobs], [j[2] for j in jobs], usage)
        tally = report.Tally(p.samples, listwise)
        refs = self._references(batch, jobs)
        judged: dict[tuple[int, int], tuple[int | None, list[int | None], str | None, str]] = {}
        for (i, j, lang, _), v, r, ref in zip(jobs, votes, raw, refs):
            g, agreeing = majority(v)
            reason = self._drop(g)
            judged[(i, j)] = (g, v, reason, self._detail(g, r))
            tally.judged(lang, g, agreeing, r, ref, reason)
        qlangs = self._langs(batch)
        rejects = []
        for reason, idx in bad.items():
            rejects.append(reject(batch[idx], reason))
            for i in idx:
                tally.rejected(qlangs[i], reason)
        skip = {i for idx in bad.values() for i in idx}
        rows, more = (self._lists if listwise else self._pairs)(batch, judged, skip, tally, qlangs)
        return StepOutput(rows, concat_rejects([*rejects, *more]), {"judge": tally.stats(), **usage.stats()})

    def _references(self, batch: pl.DataFrame, jobs: list[tuple[int, int, str, str]]) -> list[int | None]:
        c = self.params.reference_column
        if not c:
            return [None] * len(jobs)
        vals = batch[c].to_list()
        return [
            report.as_grade(vals[i] if j < 0 else (vals[i][j] if vals[i] is not None else None)) for i, j, _, _ in jobs
        ]

    def _drop(self, g: int | None) -> str | None:
        p = self.params
        if g is None:
            return "judge_unparsed" if p.on_unparsed == "drop" else None
        return "false_negative" if p.mode == "negatives" and g >= p.relevant_at else None

    def _detail(self, g: int | None, raw: str) -> str:
        if g is None:
            return f"no grade in the judge's output: {raw[:200]!r}"
        return f"graded {g} (relevant at {self.params.relevant_at})"

    def _pairs(self, batch, judged, skip, tally, qlangs) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        p = self.params
        res = [judged.get((i, -1)) for i in range(batch.height)]
        out = batch.with_columns(pl.Series(p.grade_column, [r[0] if r else None for r in res], pl.Int64))
        if p.samples > 1:
            votes = pl.Series(self._votes_column(), [r[1] if r else None for r in res], pl.List(pl.Int64))
            out = out.with_columns(votes)
        keep = [i for i in range(batch.height) if i not in skip and res[i][2] is None]
        drop = [i for i in range(batch.height) if i not in skip and res[i][2] is not None]
        rej = out[drop].with_columns(
            pl.Series("reason", [res[i][2] for i in drop], pl.Utf8),
            pl.Series("detail", [res[i][3] for i in drop], pl.Utf8),
        )
        return out[keep], [rej]

    def _lists(self, batch, judged, skip, tally, qlangs) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        p = self.params
        listed = [p.passage_column, *p.aligned_columns]
        values = {c: batch[c].to_list() for c in listed}
        cols: dict[str, list[Any]] = {c: [] for c in [*listed, "grades", "votes"]}
        keep, emptied, removed = [], [], []
        for i in range(batch.height):
            if i in skip:
                continue
            kept = [
                j for j in range(len(values[p.passage_column][i])) if (judged.get((i, j)) or (None,) * 3)[2] is None
            ]
            removed += [(i, j) for j in range(len(values[p.passage_column][i])) if j not in kept]
            if not kept:
                emptied.append(i)
                continue
            keep.append(i)
            for c in listed:
                cols[c].append(None if values[c][i] is None else [values[c][i][j] for j in kept])
            cols["grades"].append([(judged.get((i, j)) or (None,))[0] for j in kept])
            cols["votes"].append([(judged.get((i, j)) or (None, None))[1] for j in kept])
        series = [pl.Series(c, cols[c], batch.schema[c]) for c in listed]
        series.append(pl.Series(p.grade_column, cols["grades"], pl.List(pl.Int64)))
        if p.samples > 1:
            series.append(pl.Series(self._votes_column(), cols["votes"], pl.List(pl.List(pl.Int64))))
        more = [report.candidate_rejects(batch, p, removed, judged, qlangs)]
        if emptied:
            more.append(
                reject(batch[emptied], "no_candidates_left", "every candidate was dropped (see <row_id>/c<j>)")
            )
            for i in emptied:
                tally.rejected(qlangs[i], "no_candidates_left")
        return batch[keep].with_columns(series), more

    # -- report and estimates
    def finalize(self, stats: dict[str, Any]) -> StepReport | None:
        return report.build(self.name, self.params, stats)

    def estimate_prompts(self, batch: pl.DataFrame) -> list[tuple[str, str]]:
        _, jobs, _ = self._jobs(batch)
        return [(lang, prompt) for _, _, lang, prompt in jobs for _ in range(self.params.samples)]

    def estimate_counter(self) -> TokenCounter:
        p = self.params
        return load_counter(p.tokenizer or (p.model if p.engine == "transformers" else None), self.ctx.recipe_dir)

    def estimate_output_tokens(self) -> int:
        return self.params.max_new_tokens
