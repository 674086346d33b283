"""Load a recipe, apply ``--set`` overrides and ``${vars.x}`` interpolation, and check everything
(unknown names, parameters, types, language codes, column contracts) before any model loads.
Every problem is collected and raised at once as a :class:`RecipeError` with its location."""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import RecipeError
from ..pipeline import params as P
from ..pipeline import registry
from ..pipeline.params import param

TOP_KEYS = ("dataset", "vars", "source", "sources", "steps", "output", "reports", "resources")
RESOURCE_KEYS = ("num_gpus", "num_cpus", "num_workers")


@dataclass
class ResourceSpec:
    """``[resources.<step id>]``: what one Ray worker of a step asks for (the local executor ignores it)."""

    num_gpus: float | None = param(None, doc="GPUs per worker (fractions share one)", ge=0, le=1024)
    num_cpus: float | None = param(None, doc="CPUs per worker", ge=0, le=4096)
    num_workers: int | None = param(None, doc="workers (actors) of the step", ge=1, le=1_000_000)


_VAR = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# semantic versions without leading zeros (semver.org); no surrounding whitespace
SEMVER = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?"
DATASET_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
SPLIT_NAME = r"[A-Za-z0-9_]+"  # what the Hub accepts as a split name


@dataclass
class ComponentSpec:
    loc: str  # "steps[1] (translate.v1)"
    uses: str
    id: str
    cls: type
    params: Any
    raw: dict[str, Any]
    index: int = 0


@dataclass
class DatasetSpec:
    """``[dataset]``: what the card and manifest say about the dataset."""

    name: str = param(doc="dataset name (the output folder and the Hub repo name)", pattern=DATASET_NAME)
    version: str = param(doc="semantic version, e.g. '1.0.0' (the output subfolder)", pattern=SEMVER)
    license: str = param("unknown", doc="license identifier for the card (e.g. cc-by-4.0)")
    description: str = param("", doc="one paragraph for the card")
    card: str = param(
        "default",
        doc="card template: a packaged name ('default') or a .md.j2 file under the recipe's folder",
    )
    pretty_name: str | None = param(None, doc="human-readable name for the card")
    task_categories: list[str] = param([], doc="Hub task categories (added to those the steps declare)")
    source_datasets: list[str] = param([], doc="Hub ids of the datasets this one derives from")
    seed: int = param(0, doc="seed every step receives (sampling, splits within steps)", ge=0, le=2**63 - 1)
    tags: list[str] = param([], doc="extra Hub tags")


@dataclass
class OutputSpec:
    """``[output]``: how the final rows are laid out in ``data/<config>/<split>-*.parquet``."""

    config_by: str | None = param(None, doc="column whose values name the configs (e.g. lang)")
    splits: dict[str, float] | list[str] | str | None = param(
        None,
        doc="split fractions {train = 0.9, test = 0.1} (rows of one parallel_id stay together), a list of "
        "names (equal fractions; with split_column: the values allowed), or one name. Default: 'train', or "
        "with split_column the values found in that column",
        ge=0.0,
        le=1.0,
    )
    split_column: str | None = param(None, doc="column holding each row's split (default splits: its values)")
    split_seed: int = param(0, doc="seed of the split assignment", ge=0, le=2**63 - 1)
    format: list[str] = param(["hf"], doc="output formats: hf (always written) and extra layouts")
    max_rows_per_file: int = param(500_000, doc="rows per parquet file at most", ge=1, le=10**10)
    max_file_mb: int = param(
        256, doc="uncompressed MB per parquet file at most (the Hub prefers files under 500 MB)", ge=1, le=50_000
    )

    @property
    def fractions(self) -> dict[str, float] | None:
        """Split name -> fraction for a random split; None when rows carry their split (split_column)."""
        if self.split_column:
            return None
        sp = self.splits if self.splits is not None else "train"
        if isinstance(sp, str):
            return {sp: 1.0}
        if isinstance(sp, list):
            return {x: 1.0 / len(sp) for x in sp}
        return dict(sp)

    @property
    def declared_splits(self) -> list[str] | None:
        """The split names the recipe allows (None: with split_column, whatever values it holds)."""
        if self.split_column and self.splits is None:
            return None
        sp = self.splits if self.splits is not None else "train"
        return [sp] if isinstance(sp, str) else list(sp)


@dataclass
class Recipe:
    path: Path
    dataset: DatasetSpec
    source: ComponentSpec
    tables: dict[str, ComponentSpec]
    steps: list[ComponentSpec]
    output: OutputSpec
    reports: list[ComponentSpec]
    resolved: dict[str, Any]  # the recipe after --set and ${vars}, for recipe.lock.toml
    resources: dict[str, dict[str, float]] = field(default_factory=dict)  # per step id, for --executor ray

    @property
    def dir(self) -> Path:
        return self.path.parent


def parse_set(item: str) -> tuple[list[str], Any]:
    """``steps.translate.num_beams=4`` -> (["steps", "translate", "num_beams"], 4). Values parse as TOML."""
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. steps.translate.num_beams=4")
    key, value = item.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


def _apply_set(raw: dict[str, Any], path: list[str], value: Any, problems: list) -> None:
    if path[0] == "steps" and len(path) >= 3:
        steps = raw.get("steps", [])
        sel = path[1]
        target = None
        for i, s in enumerate(steps):
            if s.get("id", s.get("uses", "").split(".")[0]) == sel or str(i) == sel:
                target = s
                break
        if target is None:
            known = [s.get("id", s.get("uses", "").split(".")[0]) for s in steps]
            problems.append(
                (
                    f"--set {'.'.join(path)}",
                    f"no step with id '{sel}'{P.suggest(sel, known)} (ids: {', '.join(known)})",
                )
            )
            return
        node = target
        rest = path[2:]
    else:
        node = raw
        rest = path
    for k in rest[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            problems.append((f"--set {'.'.join(path)}", f"'{k}' is not a table"))
            return
    node[rest[-1]] = value


def _interpolate(obj: Any, vars_: dict[str, Any], loc: str, problems: list) -> Any:
    """Replace ``${vars.x}``: a value that is only a reference takes the variable's value (any type);
    a reference inside a longer string must name a string or a number."""
    if isinstance(obj, str):
        m = _VAR.fullmatch(obj)
        if m:
            if m.group(1) not in vars_:
                problems.append((loc, f"unknown variable ${{vars.{m.group(1)}}}{P.suggest(m.group(1), list(vars_))}"))
                return obj
            return vars_[m.group(1)]

        def sub(mm: re.Match) -> str:
            name = mm.group(1)
            if name not in vars_:
                problems.append((loc, f"unknown variable ${{vars.{name}}}{P.suggest(name, list(vars_))}"))
                return mm.group(0)
            v = vars_[name]
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                problems.append(
                    (
                        loc,
                        f"${{vars.{name}}} is a {type(v).__name__}: it can stand alone as a value, not inside text",
                    )
                )
                return mm.group(0)
            return str(v)

        return _VAR.sub(sub, obj)
    if isinstance(obj, dict):
        return {k: _interpolate(v, vars_, f"{loc} -> {k}" if loc else k, problems) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, vars_, f"{loc}[{i}]", problems) for i, v in enumerate(obj)]
    return obj


def _resolve_vars(vars_: dict[str, Any], problems: list) -> dict[str, Any]:
    """Variables may use other variables (``${vars.x}`` inside ``[vars]``); a cycle is an error."""
    done: dict[str, Any] = {}
    visiting: list[str] = []

    def value(name: str) -> Any:
        if name in done:
            return done[name]
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            problems.append((f"vars -> {name}", f"variables refer to each other in a cycle: {cycle}"))
            done[name] = vars_[name]
            return done[name]
        visiting.append(name)
        refs = {m.group(1) for m in _VAR.finditer(str(vars_[name]))} if _refers(vars_[name]) else set()
        known = {r: value(r) for r in refs if r in vars_}
        done[name] = _interpolate(vars_[name], {**vars_, **known}, f"vars -> {name}", problems)
        visiting.pop()
        return done[name]

    for name in vars_:
        value(name)
    return done


def _refers(obj: Any) -> bool:
    if isinstance(obj, str):
        return bool(_VAR.search(obj))
    if isinstance(obj, dict):
        return any(_refers(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_refers(v) for v in obj)
    return False


def _component(kind: str, raw: Any, loc: str, base: Path, problems: list, index: int = 0) -> ComponentSpec | None:
    if not isinstance(raw, dict):
        problems.append((loc, "expected a table"))
        return None
    uses = raw.get("uses")
    if not isinstance(uses, str):
        problems.append(
            (
                f"{loc} -> uses",
                f"missing 'uses' (the registered {kind} name, e.g. '{next(iter(registry.known(kind)), 'name.v1')}')",
            )
        )
        return None
    try:
        cls = registry.lookup(kind, uses)
    except KeyError as e:
        problems.append((f"{loc} -> uses", str(e).strip("'\"")))
        return None
    full_loc = f"{loc} ({uses})"
    cid = raw.get("id", uses.split(".")[0])
    if not isinstance(cid, str) or not _STEP_ID.fullmatch(cid):
        problems.append((f"{loc} -> id", f"ids are letters, digits, '_' or '-', got {cid!r}"))
    params, probs = P.parse(cls.Params, raw, full_loc, base)
    problems.extend(probs)
    if params is None:
        return None
    # cross-parameter rules run even when another parameter is wrong: one pass shows every problem
    for where, msg in cls.check(params, None):
        problems.append((f"{full_loc} -> {where}" if where else full_loc, msg))
    return ComponentSpec(loc=full_loc, uses=uses, id=str(cid), cls=cls, params=params, raw=raw, index=index)


def _table(cls: type, raw: Any, loc: str, problems: list, required: bool = False) -> Any:
    """``[dataset]`` / ``[output]``: checked against their declared params like any component."""
    if raw is None and not required:
        raw = {}
    if not isinstance(raw, dict):
        problems.append((loc, "expected a table" + (" with at least name and version" if required else "")))
        return None
    params, probs = P.parse(cls, raw, loc, ignore=())
    problems.extend(probs)
    return params


def _check_output(output: OutputSpec) -> list[tuple[str, str]]:
    from ..publish import formats

    problems: list[tuple[str, str]] = []
    sp = output.splits
    if isinstance(sp, dict) and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in sp.values()):
        problems.append(("output -> splits", "split fractions must be numbers, e.g. {train = 0.9, test = 0.1}"))
        sp = None
    if isinstance(sp, dict):
        if not sp:
            problems.append(("output -> splits", "expected at least one split"))
        elif output.split_column:
            problems.append(
                ("output -> splits", "with split_column, give the allowed split names as a list, not fractions")
            )
        else:
            total = sum(sp.values())
            if any(v <= 0 for v in sp.values()):
                problems.append(("output -> splits", "every split fraction must be more than 0"))
            elif abs(total - 1.0) > 1e-6:
                problems.append(("output -> splits", f"split fractions must add up to 1, got {total:g}"))
    if isinstance(sp, list) and not sp:
        problems.append(("output -> splits", "expected at least one split name"))
    for name in (output.declared_splits or []) if sp is not None else []:
        if not re.fullmatch(SPLIT_NAME, name):
            problems.append(("output -> splits", f"split names are letters, digits and '_', got {name!r}"))
    if output.config_by and output.split_column and output.config_by == output.split_column:
        problems.append(("output -> split_column", "must differ from config_by"))
    known = formats.known()
    for fm in output.format:
        if fm not in known:
            problems.append(
                ("output -> format", f"unknown format {fm!r}{P.suggest(fm, known)} (known: {', '.join(known)})")
            )
    return problems


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_columns: bool = True) -> Recipe:
    """Read, override, interpolate and validate a recipe. Raises :class:`RecipeError` with all problems."""
    # Over 80 lines on purpose: one pass over the recipe's tables in file order, each appending to one list
    # of problems so that every independent problem is reported at once; the parts with logic of their own
    # live in helpers (_component, _table, _check_output, check_chain).
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.toml"))
        hint = f" (recipes there: {', '.join(found)})" if found else ""
        raise RecipeError(f"{path} is a folder; give a recipe file{hint}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"not valid TOML: {e}", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"not UTF-8 text: {e}", path=str(path)) from None
    problems: list[tuple[str, str]] = []
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        try:
            keys, value = parse_set(item)
        except RecipeError as e:
            problems.append(("--set", str(e)))
            continue
        _apply_set(raw, keys, value, problems)

    for k in raw:
        if k not in TOP_KEYS:
            problems.append((k, f"unknown section{P.suggest(k, list(TOP_KEYS))} (known: {', '.join(TOP_KEYS)})"))
    vars_ = raw.get("vars", {})
    if not isinstance(vars_, dict):
        problems.append(("vars", "expected a table"))
        vars_ = {}
    vars_ = _resolve_vars(vars_, problems)
    resolved = {"vars": vars_} if "vars" in raw else {}
    resolved.update(_interpolate({k: v for k, v in raw.items() if k != "vars"}, vars_, "", problems))
    base = path.parent.resolve()

    # [dataset] and [output]: the same declared-parameter machinery as components
    dataset = _table(DatasetSpec, resolved.get("dataset"), "dataset", problems, required=True)
    if dataset is not None:
        from ..publish.card import find_template

        try:
            find_template(dataset.card, base)
        except RecipeError as e:
            problems.extend(e.problems)

    # [source] and [sources.<name>]
    source = None
    if "source" not in resolved:
        problems.append(("source", f"missing [source] table (known: {', '.join(registry.known('source'))})"))
    else:
        source = _component("source", resolved["source"], "source", base, problems)
    tables: dict[str, ComponentSpec] = {}
    raw_tables = resolved.get("sources") or {}
    if not isinstance(raw_tables, dict):
        problems.append(("sources", "expected [sources.<name>] tables"))
        raw_tables = {}
    for tname, traw in raw_tables.items():
        spec = _component("source", traw, f"sources.{tname}", base, problems)
        if spec:
            tables[tname] = spec

    # [[steps]]
    steps: list[ComponentSpec] = []
    raw_steps = resolved.get("steps", [])
    if not isinstance(raw_steps, list):
        problems.append(("steps", "expected [[steps]] (an array of tables)"))
        raw_steps = []
    seen_ids: dict[str, str] = {}
    steps_complete = True
    for i, s in enumerate(raw_steps):
        spec = _component("step", s, f"steps[{i}]", base, problems, index=i)
        if spec is None:
            steps_complete = False
            continue
        if spec.id in seen_ids:
            problems.append(
                (
                    f"{spec.loc} -> id",
                    f"id '{spec.id}' already used by {seen_ids[spec.id]}; give each step its own id",
                )
            )
        seen_ids[spec.id] = spec.loc
        steps.append(spec)

    # [output]
    output = _table(OutputSpec, resolved.get("output", {}), "output", problems) or OutputSpec()
    problems.extend(_check_output(output))

    # [[reports]]
    reports: list[ComponentSpec] = []
    raw_reports = resolved.get("reports", [])
    if not isinstance(raw_reports, list):
        problems.append(("reports", "expected [[reports]] (an array of tables)"))
        raw_reports = []
    for i, r in enumerate(raw_reports):
        spec = _component("report", r, f"reports[{i}]", base, problems, index=i)
        if spec:
            reports.append(spec)

    # [resources.<step id>]: what one Ray worker of a step asks for (ignored by the local executor)
    resources: dict[str, dict[str, float]] = {}
    raw_res = resolved.get("resources", {})
    if not isinstance(raw_res, dict):
        problems.append(("resources", "expected a table of [resources.<step id>] tables"))
        raw_res = {}
    ids = [s.id for s in steps]
    for sid, table in raw_res.items():
        loc = f"resources.{sid}"
        if sid not in ids:
            problems.append((loc, f"no step with id '{sid}'{P.suggest(sid, ids)} (ids: {', '.join(ids) or 'none'})"))
            continue
        if not isinstance(table, dict):
            problems.append((loc, "expected a table like { num_gpus = 1, num_cpus = 4, num_workers = 8 }"))
            continue
        spec = _table(ResourceSpec, table, loc, problems)
        if spec is not None:
            resources[sid] = {k: v for k, v in asdict(spec).items() if v is not None}

    if source is not None and check_columns and source.params is not None:
        # column contracts even when other parts are wrong, so one pass shows every problem; the walk
        # stops where a step could not be understood (its output columns are unknown)
        chain = check_chain(source, tables, steps if steps_complete else [], reports, output)
        # a component's check() runs twice, without and with the columns: the later message, which knows
        # the columns, replaces the earlier one at the same place
        again = {loc for loc, _ in chain}
        problems[:] = [pr for pr in problems if pr[0] not in again or pr in chain]
        problems.extend(pr for pr in chain if pr not in problems)
    if problems:
        raise RecipeError(list(dict.fromkeys(problems)), path=str(path))
    return Recipe(
        path=path.resolve(),
        dataset=dataset,
        source=source,
        tables=tables,
        steps=steps,
        output=output,
        reports=reports,
        resolved=resolved,
        resources=resources,
    )


def source_columns(source: ComponentSpec) -> tuple[list[str] | None, bool, list[tuple[str, str]]]:
    """(columns, complete, problems) of the source, found without reading it all. ``complete`` is False
    when the columns come from a sample (a key first seen late in a large JSONL file): then a column
    the chain needs but the sample lacks is checked again once the source has been read."""
    from ..errors import InputError

    try:
        src = source.cls(source.params)
        cols = src.columns()
        complete = src.columns_complete()
    except InputError as e:
        return None, False, [(source.loc, str(e))]
    return cols, complete, []


def side_table_names(source: ComponentSpec | None, tables: dict[str, ComponentSpec]) -> set[str]:
    names = set(tables)
    if source is not None and source.params is not None:
        names |= set(source.cls(source.params).side_table_names())
    return names


def check_chain(
    source: ComponentSpec,
    tables: dict[str, ComponentSpec],
    steps: list[ComponentSpec],
    reports: list[ComponentSpec],
    output: OutputSpec,
    columns: list[str] | None = None,
) -> list[tuple[str, str]]:
    """Walk the chain with declared columns; report a column a step needs that nothing upstream makes,
    and what the output formats need. ``columns``: the source's real columns (known after reading)."""
    from ..publish import formats

    if columns is None:
        cols, complete, problems = source_columns(source)
    else:
        cols, complete, problems = columns, True, []
    if cols is None:
        return problems  # unknown until read (e.g. a Hub dataset): checked at run time
    cols = list(dict.fromkeys(["row_id", *cols]))

    def need(loc: str, c: str, what: str) -> None:
        if c not in cols and complete:
            problems.append((loc, f"{what} '{c}'{P.suggest(c, cols)} (available: {', '.join(cols)})"))
        elif c not in cols:
            cols.append(c)  # not in the sampled columns: checked again after the source is read

    for spec in steps:
        step = spec.cls(spec.params)
        for c in step.input_columns():
            need(spec.loc, c, "needs column")
        for where, msg in spec.cls.check(spec.params, cols):
            problems.append((f"{spec.loc} -> {where}" if where else spec.loc, msg))
        cols = step.output_columns(cols)
    for spec in reports:
        for c in spec.cls(spec.params).input_columns():
            need(spec.loc, c, "needs column")
    for key in ("config_by", "split_column"):
        c = getattr(output, key)
        if c:
            need(f"output -> {key}", c, "no column at the end of the chain named")
    names = side_table_names(source, tables)
    for fm in output.format:
        for msg in formats.check(fm, cols, names, source):
            problems.append(("output -> format", msg))
    return problems
