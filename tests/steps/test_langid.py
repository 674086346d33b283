from __future__ import annotations

import polars as pl
import pytest

from mlbuild.models.lid import FastTextLID, check_languages, families_index
from mlbuild.pipeline.base import RunContext
from mlbuild.steps.langid import LangId, LangIdParams


def make(tiny_lid, **kw) -> LangId:
    step = LangId(LangIdParams(column="text", model=str(tiny_lid), **kw), RunContext())
    step.setup()
    return step


def rows(texts, **cols):
    return pl.DataFrame({"row_id": [str(i) for i in range(len(texts))], "text": texts, **cols})


def test_labels_and_drop_with_reasons(tiny_lid):
    step = make(tiny_lid, expect="pt")
    out = step.process(rows(["o gato está no tapete", "the cat sits on the mat", "onde fica a estação de trem"]))
    assert out.rows["row_id"].to_list() == ["0", "2"]
    assert out.rows["text_lang"].to_list() == ["por_Latn", "por_Latn"]
    assert out.rejects["reason"].to_list() == ["lang_mismatch"]
    assert "expected por_Latn, detected eng_Latn" in out.rejects["detail"][0]
    assert out.stats["detected"] == {"por_Latn": 2, "eng_Latn": 1}
    assert step.ctx.models["lid"]["revision"].startswith("sha256:")


def test_flag_and_keep(tiny_lid):
    batch = rows(["o gato está no tapete", "the cat sits on the mat"])
    flagged = make(tiny_lid, expect="pt", on_fail="flag").process(batch)
    assert flagged.rows["text_lang_ok"].to_list() == [True, False]
    assert flagged.rejects is None
    kept = make(tiny_lid, expect="pt", on_fail="keep").process(batch)
    assert kept.rows.height == 2 and "text_lang_ok" not in kept.rows.columns
    assert kept.stats["checks"]["checked"] == 2
    assert sum(kept.stats["checks"]["failed"].values()) == 1


def test_expect_from_column_and_newlines(tiny_lid):
    step = make(tiny_lid, expect="want")
    batch = rows(["the cat sits\non the mat", "o gato está\r\nno tapete"], want=["en", "en"])
    out = step.process(batch)
    assert out.rows["row_id"].to_list() == ["0"]
    assert out.rejects["reason"].to_list() == ["lang_mismatch"]


def test_confusable_family_accepts_when_expected_in_topk(tiny_lid):
    lid = FastTextLID(str(tiny_lid))
    text = "бүгін ауа райы жақсы"  # Kazakh training line; expected Kyrgyz
    codes, probs = lid.predict([text], k=3)
    assert codes[0][0] == "kaz_Cyrl" and "kir_Cyrl" in codes[0]
    strict = check_languages(lid, [text], ["kir_Cyrl"], families={}, short_text=0)
    assert strict["reasons"] == ["lang_mismatch"]
    loose = check_languages(lid, [text], ["kir_Cyrl"], families=families_index([["kaz", "kir"]]), short_text=0)
    assert loose["ok"].tolist() == [True] and loose["counts"]["confusable_accepted"] == 1


def test_script_check_catches_wrong_script(tiny_lid):
    lid = FastTextLID(str(tiny_lid))
    # Latin transliteration of Kyrgyz is not acceptable output for kir_Cyrl, whatever fastText says
    r = check_languages(lid, ["biz erteŋ menen darыяga barabыз"], ["kir_Cyrl"])
    assert r["reasons"] == ["wrong_script"]


def test_short_text_rule_and_min_score(tiny_lid):
    lid = FastTextLID(str(tiny_lid))
    r = check_languages(lid, ["книга"], ["kir_Cyrl"], families={}, short_text=20, top_k=4)
    assert r["ok"].tolist() == [True]
    assert r["counts"]["short_text_accepted"] + (r["codes"][0] == "kir_Cyrl") >= 1
    r = check_languages(lid, ["the cat sits on the mat"], [None], min_score=1.01)
    assert r["reasons"] == ["lang_low_score"]


def test_check_rejects_bad_params():
    from mlbuild.pipeline.params import parse

    params, problems = parse(LangIdParams, {"column": "t", "expect": "klingon", "min_score": 2.0}, "langid")
    problems += LangId.check(params, ["t"])
    text = " ".join(m for _, m in problems)
    assert "'klingon' is neither a known language code" in text
    assert "between 0 and 1, got 2.0" in text


@pytest.mark.slow
def test_packaged_lid_176():
    lid = FastTextLID("lid.176")
    codes, _ = lid.predict(["Бул кыргыз тилинде жазылган сүйлөм.", "Isto é uma frase em português."])
    assert [c[0] for c in codes] == ["kir_Cyrl", "por_Latn"]
