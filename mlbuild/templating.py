"""Jinja templates from files a recipe names (dataset cards, prompt templates), rendered in a sandbox.

A recipe may come from anyone, and its templates with it. Every template mlbuild renders goes through
:func:`environment`, a :class:`jinja2.sandbox.SandboxedEnvironment`: no attribute that starts with
``_`` (``''.__class__.__mro__``), no function or frame internals, no unsafe ``str.format``. Two more
fences:

- :func:`check_source` parses a template before any model loads and lists every syntax error and every
  reference to a forbidden attribute with its line, so ``mlbuild validate`` refuses the recipe at once;
- a template is one file: ``{% include %}``, ``{% extends %}`` and ``{% import %}`` are refused (nothing
  else is read, and a copy of the file alone reproduces what it renders).

A refusal at render time (a name built at run time, e.g. ``x|attr(name)``) becomes a :class:`RecipeError`
at the template's recipe location, never a traceback.

Example::

    tpl = compile_file(Path("card.md.j2"), "dataset -> card")   # RecipeError if unsafe or broken
    text = tpl.render(dataset={"name": "x"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    nodes,
    sandbox,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from .errors import RecipeError


def environment(**options: Any) -> SandboxedEnvironment:
    """A sandboxed Jinja environment (strict undefined, no autoescape, no loader: nothing is included)."""
    return SandboxedEnvironment(**{"undefined": StrictUndefined, "autoescape": False, **options})


# what the sandbox refuses by name, beyond anything that starts with "_"
_UNSAFE = frozenset(
    {"mro"}.union(
        *(
            getattr(sandbox, const, ())
            for const in (
                "UNSAFE_FUNCTION_ATTRIBUTES",
                "UNSAFE_METHOD_ATTRIBUTES",
                "UNSAFE_GENERATOR_ATTRIBUTES",
                "UNSAFE_COROUTINE_ATTRIBUTES",
                "UNSAFE_ASYNC_GENERATOR_ATTRIBUTES",
            )
        )
    )
)


def _forbidden(name: object) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in _UNSAFE)


def check_source(source: str, name: str = "<template>") -> list[str]:
    """Problems of a template's text, each with its line: a syntax error, or a reference to an attribute
    the sandbox refuses (``obj.__class__``, ``obj['__globals__']``, ``obj|attr('_x')``)."""
    try:
        tree = environment().parse(source, name=name)
    except TemplateSyntaxError as e:
        return [f"line {e.lineno}: {e.message}"]
    problems = [
        f"line {node.lineno}: {{% {type(node).__name__.lower()} %}} is not allowed (a template is one file)"
        for node in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport))
    ]
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            attr: object = node.attr
        elif isinstance(node, nodes.Getitem):
            attr = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            attr = (
                node.args[0].value
                if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const)
                else None
            )
        if _forbidden(attr):
            problems.append(
                f"line {node.lineno}: {attr!r} is not allowed (templates run sandboxed: no attribute "
                "that starts with '_', no frame or generator internals)"
            )
    return problems


class SafeTemplate:
    """A sandboxed template that turns render-time refusals and errors into a :class:`RecipeError` at
    ``where`` (the recipe location that named the file)."""

    def __init__(self, template: Any, path: Path, where: str):
        self.template = template
        self.path = path
        self.where = where

    def render(self, **context: Any) -> str:
        try:
            return self.template.render(**context)
        except SecurityError as e:
            raise RecipeError([(self.where, f"{self.path}: refused by the template sandbox: {e}")]) from None
        except TemplateError as e:
            line = f" line {e.lineno}:" if getattr(e, "lineno", None) else ""
            raise RecipeError([(self.where, f"{self.path}:{line} {type(e).__name__}: {e}")]) from None


def compile_file(path: Path, where: str, **options: Any) -> SafeTemplate:
    """Read, check (:func:`check_source`) and compile the template at ``path`` (``options`` go to the
    environment: ``trim_blocks``, ...). Raises :class:`RecipeError` at ``where``."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([(where, f"{path}: cannot read the template ({type(e).__name__}: {e})")]) from None
    problems = check_source(source, str(path))
    if problems:
        raise RecipeError([(where, f"{path}: {p}") for p in problems])
    return SafeTemplate(environment(**options).from_string(source), Path(path), where)


def format_fields(template: str) -> list[str]:
    """The ``{name}`` fields of a ``str.format``-style template; raises ValueError on a malformed one."""
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def safe_format(template: str, fill: dict[str, str]) -> str:
    """``template`` with its ``{name}`` fields filled from ``fill``: plain names only (no attribute or
    index access such as ``{text.__class__}``, no conversions or nested fields), so a template from a
    recipe reads nothing but the values given."""
    problems = format_problems(template, set(fill))
    if problems:
        raise ValueError(problems[0])
    return template.format_map(fill)


def format_problems(template: str, allowed: set[str]) -> list[str]:
    """Why ``template`` cannot be filled by :func:`safe_format` with ``allowed`` names (empty when it can)."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        return [f"malformed template ({e}); write a literal brace as {{{{ or }}}}"]
    out = []
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if field not in allowed:
            out.append(f"unknown field {{{field}}} (known: {', '.join('{' + a + '}' for a in sorted(allowed))})")
        elif conv or (spec and "{" in spec):
            out.append(f"field {{{field}}}: conversions and nested fields are not allowed")
    return out
