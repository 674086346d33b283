"""Load a recipe, apply ``--set`` overrides and ``${vars.x}`` interpolation, and check everything
(unknown names, parameters, types, language codes, column contracts) before any model loads.
Every problem is collected and raised at once as a :class:`RecipeError` with its location."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import RecipeError
from ..pipeline import params as P
from ..pipeline import registry

TOP_KEYS = ("dataset", "vars", "source", "sources", "steps", "output", "reports", "resources")
RESOURCE_KEYS = ("num_gpus", "num_cpus", "num_workers")
DATASET_KEYS = (
    "name",
    "version",
    "license",
    "description",
    "card",
    "pretty_name",
    "task_categories",
    "source_datasets",
    "seed",
    "tags",
)
OUTPUT_KEYS = ("config_by", "splits", "split_column", "split_seed", "format", "max_rows_per_file")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
_DSNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VAR = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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
    name: str
    version: str
    license: str = "unknown"
    description: str = ""
    card: str = "default"
    pretty_name: str | None = None
    task_categories: list[str] = field(default_factory=list)
    source_datasets: list[str] = field(default_factory=list)
    seed: int = 0
    tags: list[str] = field(default_factory=list)


@dataclass
class OutputSpec:
    config_by: str | None = None
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    split_column: str | None = None
    split_seed: int = 0
    format: list[str] = field(default_factory=lambda: ["hf"])
    max_rows_per_file: int = 500_000


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
    if isinstance(obj, str):
        m = _VAR.fullmatch(obj)
        if m:
            if m.group(1) not in vars_:
                problems.append((loc, f"unknown variable ${{vars.{m.group(1)}}}{P.suggest(m.group(1), list(vars_))}"))
                return obj
            return vars_[m.group(1)]

        def sub(mm: re.Match) -> str:
            if mm.group(1) not in vars_:
                problems.append(
                    (loc, f"unknown variable ${{vars.{mm.group(1)}}}{P.suggest(mm.group(1), list(vars_))}")
                )
                return mm.group(0)
            return str(vars_[mm.group(1)])

        return _VAR.sub(sub, obj)
    if isinstance(obj, dict):
        return {k: _interpolate(v, vars_, f"{loc} -> {k}" if loc else k, problems) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, vars_, f"{loc}[{i}]", problems) for i, v in enumerate(obj)]
    return obj


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
    params, probs = P.parse(cls.Params, raw, full_loc, base)
    problems.extend(probs)
    if params is None:
        return None
    for where, msg in cls.check(params, None):
        problems.append((f"{full_loc} -> {where}" if where else full_loc, msg))
    cid = raw.get("id", uses.split(".")[0])
    if not isinstance(cid, str) or not _STEP_ID.match(cid):
        problems.append((f"{loc} -> id", f"ids are letters, digits, '_' or '-', got {cid!r}"))
    return ComponentSpec(loc=full_loc, uses=uses, id=str(cid), cls=cls, params=params, raw=raw, index=index)


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_columns: bool = True) -> Recipe:
    """Read, override, interpolate and validate a recipe. Raises :class:`RecipeError` with all problems."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe file not found: {path}")
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
    resolved = {k: v for k, v in raw.items() if k == "vars"}
    resolved.update(_interpolate({k: v for k, v in raw.items() if k != "vars"}, vars_, "", problems))
    base = path.parent.resolve()

    # [dataset]
    ds_raw = resolved.get("dataset")
    dataset = None
    if not isinstance(ds_raw, dict):
        problems.append(("dataset", "missing [dataset] table with at least name and version"))
    else:
        for k in ds_raw:
            if k not in DATASET_KEYS:
                problems.append((f"dataset -> {k}", f"unknown key{P.suggest(k, list(DATASET_KEYS))}"))
        name, version = ds_raw.get("name"), ds_raw.get("version")
        if not isinstance(name, str) or not _DSNAME.match(name):
            problems.append(("dataset -> name", f"expected a name of letters, digits, '.', '_' or '-', got {name!r}"))
        if not isinstance(version, str) or not _SEMVER.match(version):
            problems.append(("dataset -> version", f"expected a semantic version like '1.0.0', got {version!r}"))
        for k in ("task_categories", "source_datasets", "tags"):
            if k in ds_raw and not (isinstance(ds_raw[k], list) and all(isinstance(x, str) for x in ds_raw[k])):
                problems.append((f"dataset -> {k}", "expected a list of strings"))
        if "seed" in ds_raw and not isinstance(ds_raw["seed"], int):
            problems.append(("dataset -> seed", f"expected int, got {ds_raw['seed']!r}"))
        known_ds = {k: v for k, v in ds_raw.items() if k in DATASET_KEYS}
        try:
            dataset = DatasetSpec(**known_ds)
        except TypeError as e:
            problems.append(("dataset", str(e)))

    # [source] and [sources.<name>]
    source = None
    if "source" not in resolved:
        problems.append(("source", f"missing [source] table (known: {', '.join(registry.known('source'))})"))
    else:
        source = _component("source", resolved["source"], "source", base, problems)
    tables: dict[str, ComponentSpec] = {}
    for tname, traw in (resolved.get("sources") or {}).items():
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
    for i, s in enumerate(raw_steps):
        spec = _component("step", s, f"steps[{i}]", base, problems, index=i)
        if spec:
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
    out_raw = resolved.get("output", {})
    output = OutputSpec()
    if not isinstance(out_raw, dict):
        problems.append(("output", "expected a table"))
    else:
        for k in out_raw:
            if k not in OUTPUT_KEYS:
                problems.append((f"output -> {k}", f"unknown key{P.suggest(k, list(OUTPUT_KEYS))}"))
        if "config_by" in out_raw:
            if not isinstance(out_raw["config_by"], str):
                problems.append(("output -> config_by", "expected a column name"))
            else:
                output.config_by = out_raw["config_by"]
        if "splits" in out_raw:
            sp = out_raw["splits"]
            if isinstance(sp, str):
                output.splits = {sp: 1.0}
            elif isinstance(sp, list) and all(isinstance(x, str) for x in sp) and sp:
                output.splits = (
                    {x: 1.0 / len(sp) for x in sp} if "split_column" not in out_raw else {x: 0.0 for x in sp}
                )
            elif isinstance(sp, dict) and sp and all(isinstance(v, (int, float)) and v > 0 for v in sp.values()):
                total = sum(sp.values())
                if abs(total - 1.0) > 1e-6:
                    problems.append(("output -> splits", f"split fractions must add up to 1, got {total}"))
                output.splits = {k: float(v) for k, v in sp.items()}
            else:
                problems.append(
                    (
                        "output -> splits",
                        "expected a split name, a list of names (with split_column),"
                        " or a table like {train = 0.9, test = 0.1}",
                    )
                )
        if "split_column" in out_raw:
            if not isinstance(out_raw["split_column"], str):
                problems.append(("output -> split_column", "expected a column name"))
            else:
                output.split_column = out_raw["split_column"]
        if "split_seed" in out_raw:
            if not isinstance(out_raw["split_seed"], int):
                problems.append(("output -> split_seed", "expected int"))
            else:
                output.split_seed = out_raw["split_seed"]
        if "format" in out_raw:
            fm = out_raw["format"]
            fm = [fm] if isinstance(fm, str) else fm
            if not isinstance(fm, list) or any(f not in ("hf", "beir", "conll") for f in fm):
                problems.append(
                    ("output -> format", f"expected 'hf', 'beir' and/or 'conll', got {out_raw['format']!r}")
                )
            else:
                output.format = fm
        if "max_rows_per_file" in out_raw:
            v = out_raw["max_rows_per_file"]
            if not isinstance(v, int) or v <= 0:
                problems.append(("output -> max_rows_per_file", "expected a positive int"))
            else:
                output.max_rows_per_file = v

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
        for k, v in table.items():
            if k not in RESOURCE_KEYS:
                problems.append(
                    (
                        f"{loc} -> {k}",
                        f"unknown key{P.suggest(k, list(RESOURCE_KEYS))} (known: {', '.join(RESOURCE_KEYS)})",
                    )
                )
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k == "num_workers" and v < 1):
                problems.append((f"{loc} -> {k}", f"expected a non-negative number, got {v!r}"))
        resources[sid] = {k: v for k, v in table.items() if k in RESOURCE_KEYS}

    if source is not None and check_columns and not problems:
        problems.extend(_check_columns(source, tables, steps, reports, output))
    if problems:
        raise RecipeError(problems, path=str(path))
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


def _check_columns(
    source: ComponentSpec,
    tables: dict[str, ComponentSpec],
    steps: list[ComponentSpec],
    reports: list[ComponentSpec],
    output: OutputSpec,
) -> list[tuple[str, str]]:
    """Walk the chain with declared columns; report a column a step needs that nothing upstream makes."""
    from ..errors import InputError

    problems: list[tuple[str, str]] = []
    try:
        cols = source.cls(source.params).columns()
    except InputError as e:
        return [(source.loc, str(e))]
    if cols is None:
        return problems  # unknown until read (e.g. a Hub dataset): checked at run time
    cols = list(dict.fromkeys(["row_id", *cols]))
    for spec in steps:
        step = spec.cls(spec.params)
        for where, msg in spec.cls.check(spec.params, cols):
            problems.append((f"{spec.loc} -> {where}" if where else spec.loc, msg))
        missing = [c for c in step.input_columns() if c not in cols]
        for c in missing:
            problems.append(
                (
                    spec.loc,
                    f"needs column '{c}', which no earlier step or the source provides"
                    f"{P.suggest(c, cols)} (available: {', '.join(cols)})",
                )
            )
        cols = step.output_columns(cols)
    for spec in reports:
        rep = spec.cls(spec.params)
        for c in rep.input_columns():
            if c not in cols:
                problems.append((spec.loc, f"needs column '{c}'{P.suggest(c, cols)} (available: {', '.join(cols)})"))
    for key in ("config_by", "split_column"):
        c = getattr(output, key)
        if c and c not in cols:
            problems.append(
                (
                    f"output -> {key}",
                    f"no column '{c}' at the end of the chain{P.suggest(c, cols)} (available: {', '.join(cols)})",
                )
            )
    return problems
