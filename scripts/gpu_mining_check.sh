#!/usr/bin/env bash
# GPU check of the exact hard-negative search (one H100, under 8 minutes; run from the repository root):
#   1. the CUDA tests of the search (resident and streamed corpus, fp32/fp16/bf16, two shards per GPU);
#   2. exactness on CUDA: 2,000 queries x 1M passages x 384 against an in-memory fp32 CPU search and a
#      float64 brute force (identical must be true);
#   3. the size: 100,000 queries x 10,000,000 passages x 384 from an on-disk array (15 GB file),
#      fp16 candidates + fp32 proof; the first 1,000 queries compared with a CPU fp32 search; the dense
#      fp16 matmul rate of the card in the same run; sentence-transformers' mine_hard_negatives on 10k x 1M.
# Each step prints one JSON line (the last line of its output). Needs: torch with CUDA, numpy, polars,
# sentence-transformers, datasets (faiss optional). Sizes can be lowered: QUERIES=50000 PASSAGES=5000000.
set -uo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
QUERIES=${QUERIES:-100000}
PASSAGES=${PASSAGES:-10000000}
TMPDIR=${TMPDIR:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo "== 1. pytest -m gpu (search)"
timeout 120 $PY -m pytest -q -m gpu tests/models/test_search.py -p no:cacheprovider 2>&1 | tail -3
echo "== 2. exactness on CUDA, 2000 x 1M x 384"
timeout 150 $PY scripts/bench_mining.py --device cuda --queries 2000 --passages 1000000 --dim 384 --on-disk \
  --no-st --brute 20 --tmp "$TMPDIR" 2>&1 | tail -1
echo "== 3. ${QUERIES} x ${PASSAGES} x 384, on-disk corpus"
timeout 330 $PY scripts/bench_mining.py --device cuda --queries "$QUERIES" --passages "$PASSAGES" --dim 384 \
  --on-disk --check-queries 1000 --brute 3 --st-queries 10000 --st-passages 1000000 --tmp "$TMPDIR" 2>&1 | tail -1
