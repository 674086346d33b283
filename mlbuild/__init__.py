"""mlbuild: build multilingual and cross-lingual datasets from declarative TOML recipes."""

from __future__ import annotations

__version__ = "0.1.0"
