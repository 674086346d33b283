"""Files mlbuild needs at run time (card templates, prompt templates, few-shot exemplars), found by
name: ``prompts/summarize-then-ask.v1.j2``, ``exemplars/swim.v1.jsonl``, ``data_cards/default.md.j2``.

They ship inside the package (``mlbuild/data/``, package data read with :mod:`importlib.resources`), so
an installed wheel has them as a source checkout does; a recipe may also point to its own file by a
path under its folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE_DATA = "mlbuild.data"


def packaged(name: str) -> Path | None:
    """The packaged file called ``name`` (a relative path such as ``prompts/x.v1.j2``), or None."""
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        return None
    cand = resources.files(PACKAGE_DATA).joinpath(*rel.parts)
    return Path(str(cand)) if cand.is_file() else None


def packaged_names(folder: str) -> list[str]:
    """Names of the packaged files in ``folder`` (``data_cards``, ``prompts``, ``exemplars``)."""
    d = resources.files(PACKAGE_DATA).joinpath(folder)
    return sorted(f"{folder}/{p.name}" for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def find_file(value: str, recipe_dir: Path | None = None) -> Path | None:
    """A user file by path (absolute, or under the recipe's folder), else a packaged file by name."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None
    if recipe_dir is not None and (recipe_dir / p).is_file():
        return (recipe_dir / p).resolve()
    return packaged(value)
