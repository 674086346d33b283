"""Cross-encoder scores for (query, passage) pairs: the teacher of Margin-MSE / KL distillation.

``CrossEncoderScorer(model).score(queries, passages) -> float32 [n]``. Any sequence-classification
model by Hub id or local path (``transformers``). A model with one output gives its raw logit (what
Margin-MSE distils); a model with several gives the softmax probability of label 1 ("relevant").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import requires
from .device import resolve_device, torch_dtype
from .loading import loader_kwargs
from .resolve import resolve_model

log = logging.getLogger(__name__)


class CrossEncoderScorer:
    def __init__(
        self,
        model: str,
        base_dir: Path | None = None,
        device: str = "auto",
        max_length: int = 512,
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ):
        self._torch = requires("torch", "pip install torch", "cross-encoder scores")
        transformers = requires("transformers", "pip install transformers", "cross-encoder scores")
        self.ref = resolve_model(model, base_dir)
        src = str(self.ref.path) if self.ref.path is not None else model
        self.device = resolve_device(device)
        kw = loader_kwargs(trust_remote_code=trust_remote_code)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(src, **kw)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            src, dtype=torch_dtype(self.device), **kw
        )
        self.model.to(self.device).eval()
        self.max_length = int(min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length))
        self.batch_size = batch_size
        self.num_labels = int(getattr(self.model.config, "num_labels", 1))

    @property
    def id(self) -> str:
        return self.ref.id

    @property
    def revision(self) -> str:
        return self.ref.revision

    def namespace(self) -> dict[str, Any]:
        return {
            "cross_encoder": self.id,
            "revision": self.revision,
            "max_length": self.max_length,
            "output": "logit" if self.num_labels == 1 else "p(label=1)",
        }

    def _batch(self, queries: list[str], passages: list[str]) -> np.ndarray:
        torch = self._torch
        enc = self.tokenizer(
            queries, passages, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        if self.num_labels == 1:
            out = logits[:, 0]
        else:
            out = torch.softmax(logits, dim=-1)[:, 1]
        return out.cpu().numpy().astype(np.float32)

    def score(self, queries: list[str], passages: list[str]) -> np.ndarray:
        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries for {len(passages)} passages")
        out = np.empty(len(queries), dtype=np.float32)
        for s in range(0, len(queries), self.batch_size):
            out[s : s + self.batch_size] = self._batch(
                queries[s : s + self.batch_size], passages[s : s + self.batch_size]
            )
        return out
