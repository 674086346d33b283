"""Recipes: TOML files with ``[dataset]``, ``[vars]``, ``[source]``, ``[sources.<name>]``, ``[[steps]]``,
``[output]`` and ``[[reports]]``. See :mod:`mlbuild.recipe.load`."""

from __future__ import annotations

from .load import ComponentSpec, DatasetSpec, OutputSpec, Recipe, load_recipe, parse_set

__all__ = ["ComponentSpec", "DatasetSpec", "OutputSpec", "Recipe", "load_recipe", "parse_set"]
