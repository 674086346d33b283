"""Helpers of the ``dedup.v1`` and ``decontaminate.v1`` steps: text normalisation and shingle hashes
(:mod:`.text`), MinHash signatures and LSH bands (:mod:`.minhash`), hash buckets on local disk
(:mod:`.buckets`), duplicate clusters and the keep rule (:mod:`.clusters`), blocked embedding search
(:mod:`.semantic`), embedders behind the call cache (:mod:`.vectors`) and readers of evaluation sets
(:mod:`.evalsets`). Nothing here holds a dataset in memory: per-row state lives in memory-mapped files."""
