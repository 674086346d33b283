"""Query synthesis (``synthesize_queries.v1``) in parts: prompts and exemplars (:mod:`.prompts`), text
helpers and parsing (:mod:`.text`), filters as pure functions (:mod:`.filters`), and the stages the step
runs as: the seeded per-language sample (:mod:`.sample`, global), generation with its text filters
(:mod:`.generate`, row) and the round-trip filter (:mod:`.roundtrip`, global)."""
