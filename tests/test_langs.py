from __future__ import annotations

import pytest

from mlbuild import langs


@pytest.mark.parametrize("code", ["ky", "kir", "kir_Cyrl", "ky-Cyrl", "KIR_cyrl"])
def test_kyrgyz_forms_normalize_to_one(code):
    assert langs.normalize(code) == "kir_Cyrl"


def test_hub_codes_and_scripts():
    assert langs.hub_code("kir_Cyrl") == "ky"
    assert langs.hub_code("uig") == "ug"
    assert langs.normalize("uig") == "uig_Arab"
    assert langs.normalize("uzb_Cyrl") == "uzb_Cyrl"
    assert langs.normalize("no") == "nor_Latn"  # TOML keeps 'no' a string; YAML would not
    assert langs.script_of_text("Салам, дүйнө!") == "Cyrl"
    assert langs.script_of_text("1234 !!") is None


@pytest.mark.parametrize("bad", ["zz", "xx_Latn", "english", "", "e"])
def test_unknown_codes_raise(bad):
    with pytest.raises(langs.UnknownLanguage):
        langs.normalize(bad)
