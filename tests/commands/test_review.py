"""Review queue round trip: build with a failing projection, export, fix by hand, import as a new version."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from helpers_mt import fake_mt_engine

from mlbuild import spans as S
from mlbuild.cli import main
from mlbuild.errors import InputError
from mlbuild.pipeline.runner import Runner
from mlbuild.recipe import load_recipe

ROWS = [
    ("Barack Obama visited China.", [(0, 12, "PER"), (21, 26, "LOC")], "[1]Barack Obama[/1] visitou a [2]China[/2]."),
    (
        "I met John and Mary in Paris.",
        [(6, 10, "PER"), (15, 19, "PER"), (23, 28, "LOC")],
        "Eu conheci [1]João[/1] e [2]Mary[/2] em Paris[/3].",
    ),
    ("Apple hired Tim Cook.", [(0, 5, "ORG"), (12, 20, "PER")], "A Apple contratou [2]Tim Cook[/2]."),
]

RECIPE = """
[dataset]
name = "proj"
version = "0.1.0"

[source]
uses = "jsonl.v1"
path = "rows.jsonl"

[[steps]]
id = "project"
uses = "project_spans.v1"
text_column = "text"
spans_column = "spans"
source_lang = "en"
target_langs = ["pt"]
engine = "bergamot"
on_fail = "{on_fail}"
bio = true
"""


class FakeMT:
    id, revision = "fake-mt", "1"

    def __init__(self):
        self.table = {S.insert_markers(t, [S.Span(*s) for s in sp], S.style("brackets")): o for t, sp, o in ROWS}

    def translate(self, texts, src, tgt):
        return [self.table.get(t, t) for t in texts]


@pytest.fixture
def built(write_recipe, tmp_path):

    def build(on_fail="keep", extra=""):
        rows = "".join(
            json.dumps({"text": t, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in sp]}) + "\n"
            for t, sp, _ in ROWS
        )
        path = write_recipe(RECIPE.format(on_fail=on_fail) + extra, {"rows.jsonl": rows})
        return Runner(load_recipe(path), tmp_path / "out", quiet=True).run().dataset_dir

    with fake_mt_engine(FakeMT(), name="bergamot"):  # stands in for the recipe's engine
        yield build


def _read(d):
    return pl.concat([pl.read_parquet(f) for f in sorted((d / "data").rglob("*.parquet"))], how="diagonal_relaxed")


def _fix(queue, fixes):
    lines = [json.loads(x) for x in queue.read_text(encoding="utf-8").splitlines()]
    for e in lines:
        if e["row_id"] in fixes:
            e["target"] = fixes[e["row_id"]]
    queue.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines), encoding="utf-8")
    return lines


def test_export_fix_import_round_trip(built, tmp_path, capsys):
    d = built("keep")
    queue = tmp_path / "queue.jsonl"
    assert main(["review", "export", str(d), "--to", str(queue)]) == 0
    assert "2 rows to review" in capsys.readouterr().out
    lines = [json.loads(x) for x in queue.read_text(encoding="utf-8").splitlines()]
    by_id = {e["row_id"]: e for e in lines}
    e = by_id["000000002/por_Latn"]
    assert e["status"] == "missing_marker" and e["labels"] == {"1": "PER", "2": "PER", "3": "LOC"}
    assert e["source"] == "I met [1]John[/1] and [2]Mary[/2] in [3]Paris[/3]."
    assert e["target"] == "Eu conheci [1]João[/1] e [2]Mary[/2] em Paris."  # the attempt, ready to fix
    assert by_id["000000003/por_Latn"]["target"] == "A Apple contratou [2]Tim Cook[/2]."
    # a person fixes one row, leaves the other untouched
    _fix(queue, {"000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris[/3]."})
    assert main(["review", "import", str(queue)]) == 0
    out = capsys.readouterr().out
    assert "1 rows human-corrected" in out and "1 lines left unedited" in out
    new = d.parent / "0.1.1"
    df = _read(new)
    row = df.filter(pl.col("row_id") == "000000002/por_Latn").row(0, named=True)
    assert row["projection_status"] == "ok" and row["human_corrected"] and row["projection_method"] == "human"
    assert [row["target_text"][s["start"] : s["end"]] for s in row["target_spans"]] == ["João", "Mary", "Paris"]
    assert row["target_tags"] == ["O", "O", "B-PER", "O", "B-PER", "O", "B-LOC", "O"]
    assert df["human_corrected"].sum() == 1 and df.height == 3
    assert df.schema["target_spans"] == S.SPANS_DTYPE
    man = json.loads((new / "manifest.json").read_text())
    old = json.loads((d / "manifest.json").read_text())
    assert man["version"] == "0.1.1" and man["parent"]["version"] == "0.1.0"
    assert man["human_corrected"]["rows"] == 1 and man["fingerprint"] != old["fingerprint"]
    card = (new / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "expert-generated" in meta["annotations_creators"]
    assert "## Human corrections" in card and "1 rows were corrected by hand" in card
    assert "- **Version:** 0.1.1 (from 0.1.0, with 1 human-corrected rows)" in card
    # the old version is untouched; the same version again needs --overwrite
    assert "human_corrected" not in _read(d).columns
    with pytest.raises(InputError, match="exists already"):
        from mlbuild.publish.review import import_corrections

        import_corrections(queue)


def test_rows_dropped_to_rejects_come_back(built, tmp_path):
    from mlbuild.publish.review import export_queue, import_corrections

    d = built("drop")
    assert _read(d).height == 1
    queue = tmp_path / "q.jsonl"
    assert export_queue(d, queue) == {"missing_marker": 2}
    _fix(
        queue,
        {
            "000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris[/3].",
            "000000003/por_Latn": "A [1]Apple[/1] contratou [2]Tim Cook[/2].",
        },
    )
    res = import_corrections(queue, version="0.2.0")
    assert (res.corrected, res.added_from_rejects) == (2, 2)
    df = _read(d.parent / "0.2.0")
    assert df.height == 3 and df["human_corrected"].sum() == 2
    assert set(df["projection_status"]) == {"ok"}
    rej = (d.parent / "0.2.0" / "rejects").glob("*-project.jsonl")
    assert all(not f.read_text().strip() for f in rej)


def test_broken_fix_is_reported_or_strict_error(built, tmp_path):
    from mlbuild.publish.review import export_queue, import_corrections

    d = built("keep")
    queue = tmp_path / "q.jsonl"
    export_queue(d, queue)
    _fix(queue, {"000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris."})
    with pytest.raises(InputError, match="row 000000002/por_Latn: missing_marker"):
        import_corrections(queue, strict=True)
    res = import_corrections(queue)
    assert res.corrected == 0 and len(res.invalid) == 1


def test_restored_rows_land_in_the_split_of_their_source_row(built, tmp_path):
    from mlbuild.publish.layout import split_of as _split_of
    from mlbuild.publish.review import export_queue, import_corrections

    d = built("drop", "\n[output]\nsplits = { train = 0.5, test = 0.5 }\nsplit_seed = 3\n")
    queue = tmp_path / "q.jsonl"
    export_queue(d, queue)
    _fix(queue, {"000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris[/3]."})
    import_corrections(queue)
    new = d.parent / "0.1.1"
    expected = _split_of("000000002", 3, [(0.5, "train"), (1.0, "test")])
    df = pl.read_parquet(next((new / "data" / "default").glob(f"{expected}-*.parquet")))
    assert "000000002/por_Latn" in df["row_id"].to_list()


def test_new_version_keeps_the_hub_layout_counts_and_formats(built, tmp_path):
    """The corrected version is a dataset like a build's: files and counts in the manifest match the folder,
    every data file has one schema, conll/ and the card follow the corrections, and it loads."""
    from mlbuild.publish.review import export_queue, import_corrections

    d = built("drop", '\n[output]\nsplits = { train = 0.5, test = 0.5 }\nformat = ["hf", "conll"]\n')
    old_files = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert json.loads((d / "manifest.json").read_text())["rejects"] == {"project": 2}
    queue = tmp_path / "q.jsonl"
    export_queue(d, queue)
    _fix(
        queue,
        {
            "000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris[/3].",
            "000000003/por_Latn": "A [1]Apple[/1] contratou [2]Tim Cook[/2].",
        },
    )
    new = import_corrections(queue).dataset_dir
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == old_files  # the parent is untouched
    man = json.loads((new / "manifest.json").read_text())
    on_disk = {f"{p.parent.name}/{p.name.split('-')[0]}": [] for p in (new / "data").rglob("*.parquet")}
    for p in sorted((new / "data").rglob("*.parquet")):
        on_disk[f"{p.parent.name}/{p.name.split('-')[0]}"].append(p.name)
    assert man["files"] == on_disk and man["rows"] == 3 and man["rejects"] == {}
    assert sum(n for splits in man["configs"].values() for n in splits.values()) == 3
    for names in on_disk.values():
        assert all(n.endswith(f"-of-{len(names):05d}.parquet") for n in names), names
    schemas = {str(pl.read_parquet_schema(p)) for p in (new / "data").rglob("*.parquet")}
    assert len(schemas) == 1 and "human_corrected" in schemas.pop()
    assert not list((new / "rejects").glob("*-project.jsonl"))
    conll = "".join(p.read_text() for p in (new / "conll").rglob("*.conll"))
    assert "Paris B-LOC" in conll and "Apple B-ORG" in conll
    assert json.loads((new / "conll" / "index.json").read_text())["skipped_without_tags"] == 0
    card = (new / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert all(man["fingerprint"] in c["description"] and "0.1.1" in c["description"] for c in meta["configs"])
    for cfg, splits in man["configs"].items():
        for split, n in splits.items():
            assert f"| `{cfg}` | {split} | {n} |" in card
    assert "`human_corrected`" in card and "rejects/`." in card
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(new), "default", cache_dir=str(tmp_path / "hf"))
    assert sum(len(ds[s]) for s in ds) == 3 and sum(sum(ds[s]["human_corrected"]) for s in ds) == 2


def test_a_corrected_version_can_be_corrected_again(built, tmp_path):
    from mlbuild.publish.review import export_queue, import_corrections

    d = built("keep")
    q1 = tmp_path / "q1.jsonl"
    export_queue(d, q1)
    _fix(q1, {"000000002/por_Latn": "Eu conheci [1]João[/1] e [2]Mary[/2] em [3]Paris[/3]."})
    v1 = import_corrections(q1).dataset_dir
    q2 = tmp_path / "q2.jsonl"
    assert export_queue(v1, q2) == {"missing_marker": 1}
    _fix(q2, {"000000003/por_Latn": "A [1]Apple[/1] contratou [2]Tim Cook[/2]."})
    v2 = import_corrections(q2).dataset_dir
    assert v2.name == "0.1.2" and _read(v2)["human_corrected"].sum() == 2
    card = (v2 / "README.md").read_text()
    assert card.count("## Human corrections") == 1 and "(from 0.1.1, with 1 human-corrected rows)" in card
