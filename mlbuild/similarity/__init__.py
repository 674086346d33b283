"""The work behind ``language_similarity.v1`` (:mod:`mlbuild.reports.language_similarity`) and
``mlbuild report language-similarity``:

- :mod:`.inputs`: parallel text (line-aligned files; tables read batch by batch from a finished stage, a
  dataset folder or one file), as :class:`~.inputs.ParallelSet` per language;
- :mod:`.sample`: the seeded choice of at most ``max_sentences`` usable pairs per language, in two
  passes over a table (keys first, then only the chosen sentences' texts);
- :mod:`.scores`: encode every distinct sentence once, score and rank the languages
  (the numbers themselves: :mod:`mlbuild.metrics.langsim`);
- :mod:`.render`: the result as a :class:`~mlbuild.pipeline.base.StepReport` (JSON data, Markdown, PNG
  plots), filed like a step's report.
"""
