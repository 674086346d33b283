"""Judgments through an LLM backend (:mod:`mlbuild.models.llm`): prompts go through the model-call cache
in batches, once per vote (each vote its own seed and cache namespace), grouped by language so the tokens
each language costs are counted apart (:class:`~mlbuild.accounting.Usage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..accounting import Usage
from ..pipeline.cache import NullCache
from .grades import parse_grade

COMPLETION_STOP = ("\n\n", "\nQuery:")


def load_llm(p: Any, base_dir: Path | None, device: str = "auto", quiet: bool = True):
    """The LLM backend a ``judge_relevance.v1`` parameter set names (engine, model, endpoint)."""
    from ..models.llm import load_llm as load

    if p.engine == "openai":
        opts = {"api": p.api, "api_key_env": p.api_key_env, "max_concurrency": p.max_concurrency}
        return load("openai", p.model, base_url=p.base_url, timeout=p.timeout, **opts)
    kw = {"gguf_file": p.gguf_file, "batch_size": p.batch_size, "quiet": quiet}
    return load("transformers", p.model, base_dir=base_dir, device=device, **kw)


class Judge:
    """``p``: the step's params (samples, temperature, top_p, max_new_tokens, engine, api, batch_size).
    ``completion``: the prompts end with the answer's prefix (stop at a blank line or the next query)."""

    def __init__(self, llm: Any, p: Any, seed: int, completion: bool, cache: Any = None, task: str = "judge"):
        self.llm, self.p, self.seed, self.task = llm, p, seed, task
        self.stop = COMPLETION_STOP if completion else ()
        self.cache = cache if cache is not None else NullCache()

    def namespace(self, vote: int) -> dict[str, Any]:
        p = self.p
        return {
            "task": self.task,
            "engine": p.engine,
            "api": p.api if p.engine == "openai" else None,
            "model": self.llm.id,
            "revision": self.llm.revision,
            "max_new_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": self.seed + vote if p.temperature > 0 else None,  # greedy output does not depend on it
            "stop": list(self.stop),
        }

    def _generator(self, lang: str, seed: int, usage: Usage):
        p, llm = self.p, self.llm
        client = getattr(llm, "client", None)  # an OpenAI-compatible endpoint reports its own token counts

        def gen(prompts: list[str]) -> list[str]:
            before = dict(client.usage) if client is not None else None
            kw = {"max_new_tokens": p.max_new_tokens, "temperature": p.temperature, "top_p": p.top_p}
            outs = llm.generate(prompts, stop=self.stop, seed=seed, **kw)
            rep: dict[str, int | None] = {"reported_in": None, "reported_out": None}
            if before is not None:
                rep = {
                    "reported_in": client.usage["prompt_tokens"] - before["prompt_tokens"],
                    "reported_out": client.usage["completion_tokens"] - before["completion_tokens"],
                }
            usage.add_computed(lang, prompts, outs, **rep)
            return outs

        return gen

    def run(self, prompts: list[str], langs: list[str], usage: Usage) -> tuple[list[list[int | None]], list[str]]:
        """Per prompt its ``samples`` votes (parsed grades, None = unparsed) and the first vote's generation."""
        n = self.p.samples
        votes: list[list[int | None]] = [[None] * n for _ in prompts]
        raw = [""] * len(prompts)
        by_lang: dict[str, list[int]] = {}
        for k, lang in enumerate(langs):
            by_lang.setdefault(lang, []).append(k)
        for v in range(n):
            for lang, idx in by_lang.items():
                texts = [prompts[k] for k in idx]
                gen = self._generator(lang, self.seed + v, usage)
                outs = self.cache.map(self.namespace(v), texts, gen, self.p.batch_size)
                usage.add(lang, texts, outs)
                for k, o in zip(idx, outs):
                    votes[k][v] = parse_grade(o)
                    if v == 0:
                        raw[k] = o
        return votes, raw
