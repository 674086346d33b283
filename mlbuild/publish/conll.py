"""The ``conll`` output format (``[output] format = ["hf", "conll"]``): CoNLL/BIO files beside the parquet data.

``<dataset>/conll/<config>/<split>.conll``: one ``token tag`` line per token, a blank line between
sentences, in the same configs and splits as ``data/``. Tokens and IOB2 tags come from ``target_tokens`` /
``target_tags`` (``project_spans.v1`` with ``bio = true``), else from ``tokens`` / ``tags`` (``conll.v1``).
Rows without tags (failed projections) are left out and counted in ``conll/index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..pipeline.build import BuildRecord
from .layout import CONFIG, SPLIT, assign_configs, assign_splits

PAIRS = (("target_tokens", "target_tags"), ("tokens", "tags"))


def check(columns: list[str], tables: set[str]) -> list[str]:
    cols = set(columns)
    if any({t, g} <= cols for t, g in PAIRS):
        return []
    return ["'conll' needs target_tokens/target_tags (project_spans.v1 with bio = true) or tokens/tags (conll.v1)"]


def write(build: BuildRecord, out_dir: Path) -> dict[str, Any]:
    """Stream the final rows into ``conll/<config>/<split>.conll`` (one open file per config and split)."""
    final = build.final
    tok, tag = next((t, g) for t, g in PAIRS if {t, g} <= set(final.columns))
    output = build.recipe.output
    root = out_dir / "conll"
    root.mkdir(parents=True, exist_ok=True)
    handles: dict[tuple[str, str], Any] = {}
    counts: dict[str, int] = {}
    skipped = 0
    cols = [c for c in {"row_id", tok, tag, output.config_by, output.split_column, "parallel_id"} if c]
    try:
        for df in final.iter_batches([c for c in cols if c in final.columns]):
            df = assign_configs(assign_splits(df, output), output.config_by)
            for cfg, split, toks, tags in zip(df[CONFIG], df[SPLIT], df[tok].to_list(), df[tag].to_list()):
                if not toks or tags is None or len(tags) != len(toks):
                    skipped += 1
                    continue
                key = (cfg, split)
                if key not in handles:
                    (root / cfg).mkdir(parents=True, exist_ok=True)
                    handles[key] = open(root / cfg / f"{split}.conll", "w", encoding="utf-8")
                f = handles[key]
                for t, g in zip(toks, tags):
                    f.write(f"{t} {g}\n")
                f.write("\n")
                name = f"conll/{cfg}/{split}.conll"
                counts[name] = counts.get(name, 0) + 1
    finally:
        for f in handles.values():
            f.close()
    index = {"columns": [tok, tag], "skipped_without_tags": skipped, "files": dict(sorted(counts.items()))}
    (root / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    return index
