"""The ``conll`` output format (``[output] format = ["hf", "conll"]``): CoNLL/BIO files beside the parquet data.

``<dataset>/conll/<config>/<split>.conll``: one ``token tag`` line per token, a blank line between
sentences, in the same configs and splits as ``data/``. Tokens and IOB2 tags come from ``target_tokens`` /
``target_tags`` (``project_spans.v1`` with ``bio = true``), else from ``tokens`` / ``tags`` (``conll.v1``).
Rows without tags (failed projections) are left out and counted in ``conll/index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..errors import RecipeError
from ..sources.conll import write_conll
from .writer import _config_name, assign_splits

if TYPE_CHECKING:
    from ..pipeline.runner import Runner


def check(columns: list[str], tables: set[str]) -> list[str]:
    cols = set(columns)
    if {"target_tokens", "target_tags"} <= cols or {"tokens", "tags"} <= cols:
        return []
    return ["'conll' needs target_tokens/target_tags (project_spans.v1 with bio = true) or tokens/tags (conll.v1)"]


def write(runner: Runner, final: pl.DataFrame, out_dir: Path) -> None:
    cols = next(
        ((t, g) for t, g in (("target_tokens", "target_tags"), ("tokens", "tags")) if {t, g} <= set(final.columns)),
        None,
    )
    if cols is None:
        raise RecipeError(
            [
                (
                    "output -> format",
                    "'conll' needs target_tokens/target_tags (project_spans.v1 with bio = true) "
                    "or tokens/tags (conll.v1)",
                )
            ]
        )
    tok, tag = cols
    output = runner.recipe.output
    table = assign_splits(final, output)
    cfg_col = output.config_by
    configs = (
        table[cfg_col].map_elements(_config_name, return_dtype=pl.Utf8, skip_nulls=False).to_list()
        if cfg_col
        else ["default"] * table.height
    )
    groups: dict[tuple[str, str], list[tuple[list[str], list[str]]]] = {}
    skipped = 0
    for cfg, split, toks, tags in zip(configs, table["__split"].to_list(), table[tok].to_list(), table[tag].to_list()):
        if not toks or tags is None or len(tags) != len(toks):
            skipped += 1
            continue
        groups.setdefault((cfg, split), []).append((toks, tags))
    index = {"columns": [tok, tag], "skipped_without_tags": skipped, "files": {}}
    for (cfg, split), sents in sorted(groups.items()):
        d = out_dir / "conll" / cfg
        d.mkdir(parents=True, exist_ok=True)
        write_conll(d / f"{split}.conll", sents)
        index["files"][f"conll/{cfg}/{split}.conll"] = len(sents)
    (out_dir / "conll").mkdir(exist_ok=True)
    (out_dir / "conll" / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
