"""LLM relevance judging for ``judge_relevance.v1``: the prompt (:mod:`.prompt`), reading a grade from a
generation and majority votes (:mod:`.grades`), agreement with reference judgments (:mod:`.agreement`)
and the step's report (:mod:`.report`)."""
