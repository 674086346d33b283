"""``mlbuild inspect OUTDIR``: manifest summary, per-step stats and sample rows of a built dataset."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..cli import echo
from ..errors import InputError


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show a built dataset: manifest, per-step stats, sample rows")
    p.add_argument("outdir")
    p.add_argument("--rows", type=int, default=3, help="sample rows per config")
    p.set_defaults(func=run)


def run(args) -> int:
    d = Path(args.outdir)
    mf = d / "manifest.json"
    if not mf.exists():
        raise InputError(str(mf), "no manifest.json here; point at OUT/<name>/<version>")
    m = json.loads(mf.read_text())
    echo(
        f"{m['name']} {m['version']}  fingerprint {m['fingerprint'][:16]}  rows {m['rows']}  "
        f"built in {m['seconds']}s with mlbuild {m['mlbuild']['mlbuild']}"
    )
    echo(f"languages: {', '.join(m['languages']) or 'none'}")
    echo("steps:")
    for s in m["steps"]:
        dropped = ", ".join(f"{k}={v}" for k, v in s["dropped"].items()) or "-"
        echo(
            f"  {s['id']:<16} {s['uses']:<22} in {s['rows_in']:>7} out {s['rows_out']:>7} "
            f"{s['seconds']:>8.2f}s dropped: {dropped}"
        )
    if m.get("models"):
        echo("models:")
        for role, info in m["models"].items():
            echo(f"  {role}: {info['id']} @ {info.get('revision')}")
    for cfg, splits in m["configs"].items():
        for split in splits:
            files = sorted((d / "data" / cfg).glob(f"{split}-*.parquet"))
            df = pl.read_parquet(files[0]).head(args.rows)
            echo(f"\n[{cfg}/{split}] {splits[split]} rows")
            with pl.Config(tbl_cols=12, fmt_str_lengths=60, tbl_width_chars=160):
                echo(df)
    if m.get("reports"):
        echo("\nreports: " + ", ".join(m["reports"]))
    return 0
