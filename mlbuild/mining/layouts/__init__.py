"""Output layouts of mined rows, one module each, registered by name (``output_format``).

A layout is a class with ``name``, the columns it adds (:meth:`Layout.columns`), its score columns
(``score_columns`` with ``include_scores``, ``teacher_columns`` with a teacher), the fewest negatives a
row needs (:meth:`Layout.needs`; rows with fewer go to rejects) and :meth:`Layout.build`, which turns one
:class:`Mined` batch into output rows. A new layout is a new module here that calls :func:`register`
(and is imported below).

Per-query layouts (``per_query = True``: ``listwise`` and the trainer layouts of :mod:`.lists`) write one
row per distinct query, with its first input row; the query's other rows are merged into it (their
positives are in its list) and counted, not rejected. They read :attr:`Mined.lists`."""

from __future__ import annotations

from . import labeled_list, labeled_pair, lists, margin, ntuple, triplet  # noqa: F401  (registration)
from .base import (  # noqa: F401  (the package's API)
    LAYOUTS,
    Layout,
    Mined,
    QueryLists,
    get,
    param_problems,
    per_query_names,
    register,
    score_columns,
    series,
    subset,
)

NAMES: tuple[str, ...] = tuple(LAYOUTS)
