"""Output formats beside the Hub layout (``[output] format = ["hf", "beir"]``).

A format is a module ``mlbuild.publish.<name>`` with two functions:

- ``check(columns, tables) -> list[str]``: what the format needs from the final columns and the side
  tables (``corpus``, ``queries``, ``qrels``...), checked at validation with the column contracts, so
  a recipe that cannot be written this way is refused before any work;
- ``write(build, dataset_dir) -> dict``: writes the layout from the build record (shard by shard)
  and returns a summary for the manifest.

``hf`` is the Hub layout itself, always written by :mod:`mlbuild.publish.writer`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

FORMATS = ("hf", "beir", "conll", "mteb")


def known() -> list[str]:
    return list(FORMATS)


def module(name: str):
    return import_module(f"mlbuild.publish.{name}")


def check(name: str, columns: list[str], tables: set[str], source: Any = None) -> list[str]:
    """Problems of writing format ``name`` from a chain ending in ``columns`` with side ``tables``."""
    if name == "hf" or name not in FORMATS:
        return []
    return list(module(name).check(columns, tables))
