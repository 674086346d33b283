"""Prompts/s of ``judge_relevance.v1``'s engine (batched, through the call-cache interface) against the anchor:
a plain loop calling the same model on one prompt at a time, in the same process, same prompts, same
greedy decoding. The runs alternate (``--rounds``) and each ratio compares runs of the same round, so other
work on a shared machine slows both sides alike. Reports the ratios and how often the two give the same
grade (padding in a batch may change a greedy answer).

    python scripts/bench_judge.py                          # packaged gemma-3-270m, 32 prompts, batch 8 and 16
    python scripts/bench_judge.py --model DIR --n 64 --batch-sizes 4,8,32

Prompts: the UMBRELA-style template over (query, negative) pairs of ``recipes/data/judge/triplets.jsonl``
crossed with each other (all distinct). No cache is written: every prompt is computed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from mlbuild.accounting import TokenCounter, Usage
from mlbuild.judging.engine import Judge
from mlbuild.judging.grades import parse_grade
from mlbuild.judging.prompt import JudgePrompt
from mlbuild.models.llm import load_llm
from mlbuild.resources import packaged
from mlbuild.steps.judge_relevance import JudgeParams

ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int, template: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(x) for x in (ROOT / "recipes/data/judge/triplets.jsonl").read_text().splitlines()]
    tpl = JudgePrompt(packaged(template), completion=True)
    pairs = itertools.islice(itertools.product(rows, rows), n)
    out = [(q["lang"], tpl.render(q["query"], p["negative"], q["lang"], p["lang"])) for q, p in pairs]
    return [p for _, p in out], [lang for lang, _ in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--template", default="prompts/umbrela-fewshot.v1.j2")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-sizes", default="8,16")
    ap.add_argument("--rounds", type=int, default=2, help="loop and engine runs alternate this many times")
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    texts, langs = prompts(args.n, args.template)
    llm = load_llm("transformers", args.model, device="cpu", quiet=True)
    llm.generate(texts[:1], max_new_tokens=1)  # warm-up
    kw = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    from mlbuild.judging.engine import COMPLETION_STOP

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    times: dict[str, list[float]] = {"loop": [], **{f"batch_{bs}": [] for bs in sizes}}
    same: dict[str, float] = {}
    # the runs alternate (loop, each batch size, loop, ...) so a machine shared with other work slows all alike;
    # each ratio compares runs of the same round
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        loop = [llm.generate([t], stop=COMPLETION_STOP, **kw)[0] for t in texts]
        times["loop"].append(time.perf_counter() - t0)
        for bs in sizes:
            llm.batch_size = bs
            p = JudgeParams(model=args.model, max_new_tokens=args.max_new_tokens, batch_size=bs)
            judge = Judge(llm, p, seed=0, completion=True)
            t0 = time.perf_counter()
            votes, _ = judge.run(texts, langs, Usage(TokenCounter()))
            times[f"batch_{bs}"].append(time.perf_counter() - t0)
            same[f"batch_{bs}"] = sum(parse_grade(a) == v[0] for a, v in zip(loop, votes)) / len(texts)
    n = len(texts)
    res: dict = {"model": llm.id, "prompts": n, "rounds": args.rounds, "max_new_tokens": args.max_new_tokens}
    for k, ts in times.items():
        best = min(ts)
        row = {"seconds": [round(t, 2) for t in ts], "prompts_per_s_best": round(n / best, 3)}
        if k != "loop":
            ratios = [lt / t for lt, t in zip(times["loop"], ts)]
            row.update(ratio_vs_loop=[round(r, 2) for r in ratios], same_grade_as_loop=same[k])
        res[k] = row
        print(f"{k}: {n / best:.3f} prompts/s (best of {len(ts)}: {best:.1f}s)", end="")
        print(f"; x loop per round {row['ratio_vs_loop']}; same grade {same[k]:.0%}" if k != "loop" else "")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
