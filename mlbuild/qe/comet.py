"""COMET QE: reference-free COMET (CometKiwi-style checkpoints, e.g. ``Unbabel/wmt22-cometkiwi-da``) through
``unbabel-comet``, by checkpoint folder, ``.ckpt`` file or Hub id, batched, on GPU when there is one.

``unbabel-comet`` is an optional dependency (extra ``comet``): version 2.2.7 pins ``numpy<2`` and
``transformers<5``, so it does not install beside mlbuild's default stack; use it in an environment
built for it. Scores go through the run's model-call cache (key: the checkpoint's revision and the
(source, translation) pair). No relative margin: it would need every in-batch pair scored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import requires
from ..models.device import resolve_device
from ..models.resolve import resolve_model
from ..pipeline.cache import NullCache
from .scores import QEScores, scored

PIN = "unbabel-comet==2.2.7"


def checkpoint_path(model: str, base_dir: Path | None, comet: Any) -> tuple[Path, str, str]:
    """(checkpoint file, id, revision) of a COMET model: a ``.ckpt`` file, a folder holding
    ``checkpoints/model.ckpt`` (the layout of COMET's Hub repositories), or a Hub id (downloaded by COMET)."""
    ref = resolve_model(model, base_dir)
    if ref.path is None:
        folder = Path(comet.download_model(model))
        ckpt = folder if folder.suffix == ".ckpt" else folder / "checkpoints" / "model.ckpt"
        return ckpt, model, ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ref.revision
    if ref.path.is_file():
        return ref.path, model, ref.revision
    ckpt = ref.path / "checkpoints" / "model.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ref.path}: no checkpoints/model.ckpt (a COMET model folder) and not a .ckpt file")
    return ckpt, model, ref.revision


class CometQE:
    method = "comet"

    def __init__(
        self,
        model: str,
        base_dir: Path | None = None,
        device: str = "auto",
        *,
        cache: Any = None,
        batch_size: int = 16,
    ):
        comet = requires(
            "comet",
            f"pip install {PIN}  (in an environment of its own: it pins numpy<2 and transformers<5)",
            "qe = 'comet'",
        )
        path, self._id, self._revision = checkpoint_path(model, base_dir, comet)
        self.model = comet.load_from_checkpoint(str(path))
        self.gpus = 1 if resolve_device(device).startswith("cuda") else 0
        self.cache = cache if cache is not None else NullCache()
        self.batch_size = batch_size

    @property
    def id(self) -> str:
        return self._id

    @property
    def revision(self) -> str | None:
        return self._revision

    def namespace(self) -> dict[str, Any]:
        return {"task": "qe-comet", "model": self._id, "revision": self._revision}

    def _predict(self, keys: list[str]) -> list[float]:
        data = [dict(zip(("src", "mt"), json.loads(k))) for k in keys]
        out = self.model.predict(data, batch_size=self.batch_size, gpus=self.gpus, progress_bar=False)
        return [float(s) for s in out.scores]

    def score(self, sources: Sequence[str | None], targets: Sequence[str | None]) -> QEScores:
        n = len(sources)
        score: list[float | None] = [None] * n
        idx = scored(sources, targets)
        keys = [json.dumps([sources[i], targets[i]], ensure_ascii=False) for i in idx]  # unambiguous pair keys
        got = self.cache.map(self.namespace(), keys, self._predict, batch_size=max(self.batch_size * 8, 64))
        for i, s in zip(idx, got):
            score[i] = round(float(s), 4)
        return QEScores(score, [None] * n)
