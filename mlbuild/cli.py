"""``mlbuild`` command line: verbs live in :mod:`mlbuild.commands`, one module each.

Exit codes: 0 ok, 2 recipe or input error, 1 runtime failure. One clean error line; the traceback
only with ``--debug``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands, logsetup
from .errors import MlbuildError
from .redact import redact


def echo(*parts: object, err: bool = False) -> None:
    """The CLI layer's only way to talk to the terminal (library code logs instead)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(" ".join(str(p) for p in parts) + "\n")
    stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlbuild", description="Build multilingual datasets from TOML recipes.")
    parser.add_argument("--version", action="version", version=f"mlbuild {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # one display: our log lines, library warnings and progress bars; secrets masked (see logsetup.py)
    logsetup.configure(quiet=getattr(args, "quiet", False), debug=args.debug)
    try:
        return int(args.func(args) or 0)
    except MlbuildError as e:
        if args.debug:
            raise
        echo(f"error: {redact(e)}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        echo("interrupted; rerun the same command to resume", err=True)
        return 130
    except Exception as e:  # the CLI's last line of defence
        if args.debug:
            raise
        echo(f"error: {type(e).__name__}: {redact(e)} (rerun with --debug for the traceback)", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
