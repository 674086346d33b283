"""The LLM calls of the ``generate`` stage, through the run's model-call cache (a killed run resumes
without asking again), counted per language (tokens and seconds of uncached calls; tokens in/out for
cost accounting, :class:`~mlbuild.accounting.Usage`: a summary counts for its passage's language, a question
or a rewritten question for its target language).

Staged generation (``generation = "staged"``), each call stopping at the end of its line:

1. ``summary``: once per passage, ``max_new_tokens`` at most;
2. ``question``: per query, after ``Summary: <summary>`` and the header in the question's language,
   ``question_max_new_tokens`` at most; the question ends at its first question mark;
3. ``pivot``: per cross-lingual query in ``pivot`` mode whose source question passed the text filters,
   the question rewritten in the target language after its header.

``generation = "single"``: one call per query writes the summary and the question line (parsed)."""

from __future__ import annotations

from typing import Any

from ..accounting import TokenCounter, Usage
from .prompts import pick_summary_exemplars, pivot_labels, question_label
from .text import parse_generation, parse_line, parse_question

STOP_SINGLE = ("\n\n", "\nPassage", "\nTitle:")
STOP_LINE = ("\n",)


class Caller:
    """Runs a batch's calls for a :class:`~.generate.GenerateStage` (its params, LLM, prompts, cache)."""

    def __init__(self, stage: Any):
        self.stage = stage
        self.p = stage.params
        tok = getattr(stage.llm, "tokenizer", None)
        self.counter = TokenCounter(tok, stage.llm.id) if tok is not None else TokenCounter()
        self.usage = Usage(self.counter)  # tokens of the current batch, per language (see run)

    def namespace(self, call: str, max_new_tokens: int, stop: tuple[str, ...]) -> dict[str, Any]:
        p, llm = self.p, self.stage.llm
        ns = {
            "engine": p.engine,
            "model": llm.id,
            "revision": llm.revision,
            "max_new_tokens": max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": self.stage.seed if p.temperature > 0 else None,  # greedy output does not depend on it
            "stop": list(stop),
        }
        if call != "single":  # the single call keeps the namespace of summarize-then-ask.v1 (its cache)
            ns["call"] = call
        return ns

    def generate(
        self, call: str, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...], usage: dict, langs: list
    ) -> list:
        """The model's outputs for ``prompts`` (cached); tokens and seconds of this call go to ``usage``, tokens
        in/out per language (``langs``, one per prompt) to ``self.usage``."""
        if not prompts:
            return []
        llm, p = self.stage.llm, self.p
        lang_of = dict(zip(prompts, langs))
        client = getattr(llm, "client", None)  # an OpenAI-compatible endpoint reports its own token counts

        def gen(batch: list[str]) -> list[str]:
            before = dict(client.usage) if client is not None else None
            outs = llm.generate(
                batch,
                max_new_tokens=max_new_tokens,
                temperature=p.temperature,
                top_p=p.top_p,
                stop=stop,
                seed=self.stage.seed,
            )
            rep = {}
            if before is not None:
                rep = {
                    "reported_in": client.usage["prompt_tokens"] - before["prompt_tokens"],
                    "reported_out": client.usage["completion_tokens"] - before["completion_tokens"],
                }
            self.usage.add_computed_mixed([lang_of[t] for t in batch], batch, outs, **rep)
            return outs

        from ..pipeline.cache import cached_map

        before = dict(llm.usage)
        ns = self.namespace(call, max_new_tokens, stop)
        cache = self.stage.ctx.cache
        out = (
            cache.map(ns, prompts, gen, p.batch_size)
            if cache is not None
            else cached_map(None, ns, prompts, gen, p.batch_size)
        )
        groups: dict[str, list[int]] = {}
        for k, lang in enumerate(langs):
            groups.setdefault(lang, []).append(k)
        for lang, ks in groups.items():  # every prompt the data needs, cache hits included
            self.usage.add(lang, [prompts[k] for k in ks], [out[k] for k in ks])
        usage["generated_tokens"] = usage.get("generated_tokens", 0) + int(
            llm.usage["generated_tokens"] - before["generated_tokens"]
        )
        usage["generation_seconds"] = usage.get("generation_seconds", 0.0) + float(
            llm.usage["seconds"] - before["seconds"]
        )
        return out

    def by_target(self, call: str, jobs: list, prompts: list[str], max_new: int, stop, lang_stats) -> list[str]:
        """Outputs for ``jobs`` (one prompt each), called per target language (tokens/s per language)."""
        out: list[str] = [""] * len(jobs)
        groups: dict[str, list[int]] = {}
        for k, j in enumerate(jobs):
            groups.setdefault(j.target, []).append(k)
        for t, ks in groups.items():
            s = lang_stats(t)
            res = self.generate(call, [prompts[k] for k in ks], max_new, stop, s, [t] * len(ks))
            for k, r in zip(ks, res):
                out[k] = r
        return out

    def run(self, jobs: list, texts: list[str], heads: list[str], plangs: list, lang_stats, stats: dict) -> None:
        """Fill every job's ``summary``, ``query`` and ``generation`` (the raw text the model wrote); the batch's
        tokens per language go to ``stats`` (``tokens``, ``token_count_method``)."""
        self.usage = Usage(self.counter)
        for j in jobs:
            if j.output:
                lang_stats(j.target)["generated"] += 1
        if self.p.generation == "single":
            self._single(jobs, texts, heads, plangs, lang_stats)
        else:
            self._staged(jobs, texts, heads, plangs, lang_stats, stats)
        stats.update(self.usage.stats())

    def _single(self, jobs, texts, heads, plangs, lang_stats) -> None:
        render = self.stage.prompts.render
        prompts = [render(texts[j.i], plangs[j.i], j.target, heads[j.i], j.exemplars) for j in jobs]
        outs = self.by_target("single", jobs, prompts, self.p.max_new_tokens, STOP_SINGLE, lang_stats)
        for j, o in zip(jobs, outs):
            j.summary, j.query = parse_generation(o, question_label(j.target))
            j.generation = o

    def _staged(self, jobs, texts, heads, plangs, lang_stats, stats) -> None:
        p, st = self.p, self.stage
        render = st.prompts.render
        rows = sorted({j.i for j in jobs})
        shots = {i: pick_summary_exemplars(st.exemplar_pool, plangs[i], p.shots_monolingual) for i in rows}
        prompts = [render(texts[i], plangs[i], plangs[i], heads[i], shots[i], stage="summary") for i in rows]
        usage = stats.setdefault("summaries", {"generated": 0})
        usage["generated"] += len(rows)
        langs = [plangs[i] for i in rows]
        raw = dict(zip(rows, self.generate("summary", prompts, p.max_new_tokens, STOP_LINE, usage, langs)))
        ask = [j for j in jobs if j.source is None]
        for j in ask:
            j.summary = parse_line(raw[j.i])
        prompts = [
            render(texts[j.i], plangs[j.i], j.target, heads[j.i], j.exemplars, stage="question", summary=j.summary)
            for j in ask
        ]
        for j, o in zip(
            ask, self.by_target("question", ask, prompts, p.question_max_new_tokens, STOP_LINE, lang_stats)
        ):
            j.query = parse_question(o)
            j.generation = f"Summary:{raw[j.i]}\n{question_label(j.target)}:{o}"
        sources = [j.source for j in jobs if j.source is not None]
        verdict = dict(zip(map(id, sources), st.text_verdict(sources, texts).reasons)) if sources else {}
        pivot = [j for j in jobs if j.source is not None and verdict[id(j.source)] is None]
        prompts = [
            render("", plangs[j.i], j.target, "", j.exemplars, stage="pivot", source_query=j.source.query)
            for j in pivot
        ]
        for j, o in zip(
            pivot, self.by_target("pivot", pivot, prompts, p.question_max_new_tokens, STOP_LINE, lang_stats)
        ):
            j.query = parse_question(o)
            src_label, tgt_label = pivot_labels(plangs[j.i], j.target)
            j.generation = f"{src_label}: {j.source.query}\n{tgt_label}:{o}"
        for j in jobs:
            if j.source is not None:
                j.summary = j.source.summary
