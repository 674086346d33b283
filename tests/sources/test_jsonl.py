from __future__ import annotations

import pytest

from mlbuild.errors import InputError
from mlbuild.sources.jsonl import JsonlParams, JsonlSource


def src(tmp_path, content: bytes | str, **kw) -> JsonlSource:
    p = tmp_path / "in.jsonl"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return JsonlSource(JsonlParams(path=str(p), **kw))


def test_malformed_line_names_file_and_line(tmp_path):
    s = src(tmp_path, '{"text": "a"}\n{"text": "b",}\n')
    with pytest.raises(InputError) as ei:
        s.read_all()
    assert ei.value.line == 2 and "in.jsonl:2" in str(ei.value) and "malformed JSON" in str(ei.value)


def test_non_utf8_names_line(tmp_path):
    s = src(tmp_path, b'{"text": "a"}\n\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"in.jsonl:3: not UTF-8"):
        s.read_all()


def test_missing_required_field_names_field(tmp_path):
    s = src(tmp_path, '{"id": 1, "text": "a"}\n{"text": "b"}\n', required=["id"])
    with pytest.raises(InputError, match=r"in.jsonl:2: field 'id': missing required field"):
        s.read_all()


def test_bad_rows_become_rejects_with_reasons(tmp_path):
    s = src(
        tmp_path,
        "\n".join(
            [
                '{"id": "a", "text": "fine"}',
                '{"id": "b", "text": "   "}',
                '{"id": "c", "text": 42}',
                '{"id": "d"}',
                '{"id": "a", "text": "again"}',
                "[1, 2]",
            ][:5]
        )
        + "\n",
        text_columns=["text"],
        id_column="id",
    )
    out = s.read_all()
    assert out.rows["row_id"].to_list() == ["a", "a"]  # duplicates are found across the input by the runner
    assert out.rejects["reason"].to_list() == ["empty_text", "wrong_type", "missing_text"]
    assert "line 3" in out.rejects["detail"][1]


def test_not_an_object(tmp_path):
    with pytest.raises(InputError, match="expected a JSON object"):
        src(tmp_path, "[1, 2]\n").read_all()


def test_row_ids_are_stable_line_numbers(tmp_path):
    out = src(tmp_path, '{"t": "a"}\n\n{"t": "b"}\n').read_all()
    assert out.rows["row_id"].to_list() == ["000000001", "000000003"]
