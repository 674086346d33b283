"""Errors named by what the caller should do.

- ``RecipeError``: the recipe is wrong; fix it (CLI exit 2). Carries every problem at once.
- ``InputError``: an input file is wrong; fix the file (exit 2). Names file, line and field.
- ``StepError``: a step failed at run time (exit 1). Names the step and, where known, the row.
- ``DependencyError``: an optional dependency is missing; the message has the install command.
"""

from __future__ import annotations


class MlbuildError(Exception):
    """Base of every error mlbuild raises on purpose."""

    exit_code = 1


class RecipeError(MlbuildError):
    """One or more problems in a recipe, each with its location (``steps[1] (translate.v1) -> target_langs``)."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]] | str, path: str | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = problems
        self.path = path
        super().__init__(self._format())

    def _format(self) -> str:
        head = f"{self.path}: " if self.path else ""
        if len(self.problems) == 1:
            loc, msg = self.problems[0]
            return f"{head}{loc + ': ' if loc else ''}{msg}"
        lines = [f"{head}{len(self.problems)} problems in the recipe:"]
        lines += [f"  - {loc + ': ' if loc else ''}{msg}" for loc, msg in self.problems]
        return "\n".join(lines)


class InputError(MlbuildError):
    """A bad input file: names the file, the line (1-based) or row, and the field."""

    exit_code = 2

    def __init__(self, file: str, message: str, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = file + (f":{line}" if line is not None else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


class EmptyBuildError(MlbuildError):
    """Every row was dropped: there is no dataset to write (exit 2; the rejects say why)."""

    exit_code = 2


class StepError(MlbuildError):
    """A step failed while running."""

    exit_code = 1

    def __init__(self, step: str, message: str, row_id: str | None = None):
        self.step, self.row_id = step, row_id
        where = f"step {step}" + (f", row {row_id}" if row_id is not None else "")
        super().__init__(f"{where}: {message}")


class DependencyError(MlbuildError):
    """An optional dependency is missing."""

    exit_code = 2

    def __init__(self, package: str, install: str, purpose: str = ""):
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"missing package '{package}'{why}; install it with: {install}")


def requires(module: str, install: str, purpose: str = ""):
    """Import ``module`` or raise ``DependencyError`` with the exact install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised when the package is absent
        raise DependencyError(module, install, purpose) from e
