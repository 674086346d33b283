"""The work behind ``project_spans.v1`` (:mod:`mlbuild.steps.project_spans`), in parts small enough to test
alone:

- :mod:`.rows`: one row's projection (:class:`~.rows.Projected`) as it goes through the stages;
- :mod:`.checks`: why a row is not ``ok``, one pure function per check, each returning a
  :class:`~mlbuild.pipeline.filters.Verdict`; :func:`~.checks.acceptance` is the gate ``on_fail`` acts on;
- :mod:`.markers`: marked MT output -> repaired, extracted target spans; the plain-text check;
- :mod:`.alignment`: source span -> aligned target words -> one target span;
- :mod:`.project`: the stages in order for one batch (:class:`~.project.Projector`);
- :mod:`.counts`: per-language counts (typed) and the step's report; :mod:`.output`: the output columns.

Spans are character offsets ``(start, end, label)`` beside the text (:mod:`mlbuild.spans`).
"""
