"""Files mlbuild needs at run time (card templates, prompt templates, few-shot exemplars), found by
name: ``prompts/summarize-then-ask.v1.j2``, ``exemplars/swim.v1.jsonl``, ``data_cards/default.md.j2``.

They ship inside the package (``mlbuild/data/``, read with :mod:`importlib.resources`), so an
installed wheel has them; a recipe may also point to its own file by a path under its folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE_DATA = "mlbuild.data"
# the source tree's folders, for a checkout whose files have not moved into the package yet
_TREE = Path(__file__).resolve().parent.parent


def packaged(name: str) -> Path | None:
    """The packaged file called ``name`` (a relative path such as ``prompts/x.v1.j2``), or None."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name:
        return None
    try:
        root = resources.files(PACKAGE_DATA)
        cand = root.joinpath(*rel.parts)
        if cand.is_file():
            return Path(str(cand))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    for base in (_TREE / "recipes", _TREE):
        cand = base / rel
        if cand.is_file():
            return cand
    return None


def find_file(value: str, recipe_dir: Path | None = None) -> Path | None:
    """A user file by path (absolute, or under the recipe's folder), else a packaged file by name."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None
    if recipe_dir is not None and (recipe_dir / p).is_file():
        return (recipe_dir / p).resolve()
    return packaged(value)
