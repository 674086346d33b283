"""Dataset card: YAML metadata the Hub reads (configs, languages, license...) plus a Markdown body
rendered from a Jinja template. Everything in it comes from what really ran.

The template (``[dataset] card``) is a packaged name (``default`` = ``mlbuild/data/data_cards/default.md.j2``)
or a file under the recipe's own folder (``card = "card.md.j2"``); any other path is refused at validation
(the card becomes ``README.md``, which ``mlbuild push`` publishes). Templates render in Jinja's sandbox
(:mod:`mlbuild.templating`); a template is one file (no includes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .. import langs, resources, templating
from ..errors import RecipeError

CARD_FOLDER = "data_cards"
WHERE = "dataset -> card"


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


def packaged_template(name: str) -> Path | None:
    """A packaged card template by name: ``default``, ``default.md.j2`` or ``data_cards/default.md.j2``."""
    stem = name.removeprefix(f"{CARD_FOLDER}/")
    for cand in (stem, f"{stem}.md.j2"):
        found = resources.packaged(f"{CARD_FOLDER}/{cand}") if "/" not in cand and cand else None
        if found is not None:
            return found
    return None


def user_template(name: str, recipe_dir: Path) -> Path | None:
    """The recipe's own card template ``name`` (a path under ``recipe_dir``), or None when ``name`` names
    no file there. Raises :class:`RecipeError` for a path that leads outside the recipe's folder."""
    root = Path(recipe_dir).resolve()
    p = Path(name).expanduser()
    target = (p if p.is_absolute() else root / p).resolve()  # symlinks and '..' resolved
    if not target.is_relative_to(root):
        raise RecipeError(
            [
                (
                    WHERE,
                    f"{name!r} is outside the recipe's folder ({root}): a card template is a packaged name "
                    f"({', '.join(_packaged_names())}) or a file under the recipe's folder",
                )
            ]
        )
    return target if target.is_file() else None


def _packaged_names() -> list[str]:
    return [n.split("/")[-1].removesuffix(".md.j2") for n in resources.packaged_names(CARD_FOLDER)]


def find_template(name: str, recipe_dir: Path) -> Path:
    """The card template ``[dataset] card`` names: a file under the recipe's folder, else a packaged
    template. Checked (syntax, sandbox rules) here, so validation refuses a bad one before any model loads.
    Raises :class:`RecipeError` at ``dataset -> card``."""
    path = user_template(name, recipe_dir) or packaged_template(name)
    if path is None:
        raise RecipeError(
            [
                (
                    WHERE,
                    f"card template {name!r} not found: neither a packaged template "
                    f"({', '.join(_packaged_names())}) nor a file under {Path(recipe_dir).resolve()}",
                )
            ]
        )
    templating.compile_file(path, WHERE)
    return path


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
    desc = f"{ds['name']} {ds['version']}, mlbuild fingerprint {ctx['fingerprint']}"
    # configs an output format adds beside the Hub layout (e.g. the mteb corpus/queries/qrels), root-relative
    # (a name the Hub layout already uses keeps the Hub layout's meaning; the format's own README has it)
    taken = {c["config_name"] for c in configs}
    configs += [
        {**c, "description": c.get("description") or desc}
        for c in ctx.get("extra_configs", [])
        if c["config_name"] not in taken
    ]
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
    """The card: YAML front matter from :func:`metadata` and the body from ``template`` (sandboxed; a
    refused or failing template is a :class:`RecipeError` at ``dataset -> card``)."""
    tpl = templating.compile_file(template, WHERE, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    body = tpl.render(**ctx)
    head = yaml.safe_dump(metadata(ctx), sort_keys=False, allow_unicode=True)
    return f"---\n{head}---\n\n{body.lstrip()}"
