"""The models synthesis stages load (one place, so tests can replace them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_llm(p: Any, base_dir: Path, device: str, quiet: bool = False):
    from ..models.llm import load_llm as _load

    if p.engine == "openai":
        return _load(
            "openai",
            p.model,
            base_url=p.base_url,
            api=p.api,
            api_key_env=p.api_key_env,
            max_concurrency=p.max_concurrency,
            timeout=p.timeout,
        )
    return _load(
        "transformers",
        p.model,
        base_dir=base_dir,
        device=device,
        gguf_file=p.gguf_file,
        batch_size=p.batch_size,
        quiet=quiet,
    )


def load_embedder(p: Any, base_dir: Path, device: str, cache: Any):
    """The round-trip embedder; ``cache`` is a vector store (``vector_cache(ctx)``) or None."""
    from ..models.embed import load_embedder as _load

    return _load(p.embed_engine, p.embed_model, base_dir=base_dir, device=device, cache=cache)


def load_lid(model: str, base_dir: Path):
    from ..models.lid import FastTextLID

    return FastTextLID(model, base_dir)
