"""Files mlbuild ships and reads by name (see :mod:`mlbuild.resources`): ``data_cards/*.md.j2`` (dataset
card templates), ``prompts/*.j2`` (prompt templates), ``exemplars/*.jsonl`` (few-shot exemplars)."""
