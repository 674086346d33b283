"""Retrieval evaluation: metrics (ir-measures over trec_eval's own code), TREC run/qrels files,
retrieval sets read from built datasets (MTEB or BEIR layout), retrievers (BM25, dense) and the
evaluation loop behind ``mlbuild eval retrieval``. See docs/retrieval.md."""
