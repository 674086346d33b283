"""Dataset card: YAML metadata the Hub reads (configs, languages, license...) plus a Markdown body
rendered from a Jinja template in ``data_cards/``. Everything in it comes from what really ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .. import langs
from ..errors import RecipeError

CARD_DIRS = (Path(__file__).resolve().parent.parent.parent / "data_cards",)


def size_category(n: int) -> str:
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for b, name in bounds:
        if n < b:
            return name
    return "1B<n<10B"


def find_template(name: str, recipe_dir: Path) -> Path:
    cands = [recipe_dir / name, *(d / name for d in CARD_DIRS), *(d / f"{name}.md.j2" for d in CARD_DIRS)]
    for c in cands:
        if c.is_file():
            return c
    raise RecipeError(
        [("dataset -> card", f"card template {name!r} not found (looked in: {', '.join(str(c) for c in cands)})")]
    )


def metadata(ctx: dict[str, Any]) -> dict[str, Any]:
    ds = ctx["dataset"]
    configs = []
    for cfg, splits in ctx["configs"].items():
        configs.append(
            {
                "config_name": cfg,
                # datasets caches a local folder by its name, config and this YAML: the fingerprint here
                # keeps two builds that share a version folder name (or a rebuilt version) apart
                "description": f"{ds['name']} {ds['version']}, mlbuild fingerprint {ctx['fingerprint']}",
                "data_files": [{"split": sp, "path": f"data/{cfg}/{sp}-*.parquet"} for sp in splits],
            }
        )
    if len(configs) == 1:
        configs[0]["default"] = True
    meta: dict[str, Any] = {
        "configs": configs,
        "language": sorted({langs.hub_code(c) for c in ctx["languages"]}) or None,
        "license": ds["license"],
        "multilinguality": ctx["multilinguality"],
        "size_categories": [size_category(ctx["total_rows"])],
        "annotations_creators": ctx["annotations_creators"],
        "language_creators": ctx["language_creators"],
        "source_datasets": ctx["source_datasets"],
        "task_categories": ctx["task_categories"] or None,
        "pretty_name": ds.get("pretty_name") or ds["name"],
        "tags": ["mlbuild", *ds.get("tags", [])],
    }
    return {k: v for k, v in meta.items() if v is not None}


def render(ctx: dict[str, Any], template: Path) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    body = env.get_template(template.name).render(**ctx)
    head = yaml.safe_dump(metadata(ctx), sort_keys=False, allow_unicode=True)
    return f"---\n{head}---\n\n{body.lstrip()}"
