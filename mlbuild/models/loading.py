"""What may reach ``from_pretrained``, and what may not reach a decoding call.

Validation already refuses loader keys in free-form decoding tables (``kind="decoding"`` in
:mod:`mlbuild.pipeline.params`). This is the run-time half, for every caller (plugins and the Python
API included):

- :func:`loader_kwargs` builds the keyword arguments of ``from_pretrained`` from explicit, documented
  settings only: ``trust_remote_code`` (a real ``bool``, off unless asked for), ``revision`` and
  ``gguf_file``. Nothing free-form is ever merged into them.
- :func:`check_decoding` refuses a decoding table that carries a loader key (``trust_remote_code``,
  ``revision``, ``token``, ``cache_dir``, ``device_map``, ...: ``params.LOADER_KEYS``) or a setting the
  backend sets itself.

Example::

    kw = loader_kwargs(trust_remote_code=p.trust_remote_code, revision=p.revision)
    model = AutoModel.from_pretrained(src, dtype=dtype, **kw)
    extra = check_decoding(p.generation, "steps[2] (translate.v1) -> generation")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import RecipeError
from ..pipeline.params import LOADER_KEYS


def loader_kwargs(
    *, trust_remote_code: bool = False, revision: str | None = None, gguf_file: str | None = None
) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments from explicit settings; ``trust_remote_code`` must be a bool
    (a string such as ``"false"`` would be truthy: refused)."""
    if not isinstance(trust_remote_code, bool):
        raise TypeError(f"trust_remote_code must be True or False, got {trust_remote_code!r}")
    kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kw["revision"] = str(revision)
    if gguf_file:
        kw["gguf_file"] = str(gguf_file)
    return kw


def check_decoding(decoding: Mapping[str, Any] | None, where: str = "decoding", reserved: Iterable[str] = ()) -> dict:
    """``decoding`` as a plain dict, or :class:`RecipeError` at ``where`` when it carries a loader key or a
    ``reserved`` key (one the backend sets from its own parameters)."""
    d = dict(decoding or {})
    loaders = sorted(k for k in d if k in LOADER_KEYS)
    problems = []
    if loaders:
        problems.append(
            (
                where,
                f"{', '.join(repr(k) for k in loaders)}: model loading settings are not decoding settings and never "
                "reach from_pretrained from here; use the backend's own parameters (remote code stays off unless "
                "trust_remote_code = true)",
            )
        )
    own = sorted(k for k in d if k in set(reserved) and k not in LOADER_KEYS)
    if own:
        problems.append((where, f"{', '.join(repr(k) for k in own)}: set by the backend's own parameters"))
    if problems:
        raise RecipeError(problems)
    return d
