"""The ctranslate2 MT engine on tiny random seq2seq models built and converted in the test."""

from __future__ import annotations

import threading
import time

import pytest
from helpers_mt import CORPUS, build_tiny_mt, build_tiny_opus_mt

from mlbuild.models import mt_ct2
from mlbuild.models.mt import engines, load_mt

pytest.importorskip("ctranslate2")

TEXTS = [*CORPUS, "", "the cat sits on the mat where is the station i like green tea"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test converts into its own cache folder."""
    monkeypatch.setenv("MLBUILD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def opus(tmp_path_factory):
    return build_tiny_opus_mt(tmp_path_factory.mktemp("opus") / "m", eos_bias=4.8)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("fam")
    built = {fam: build_tiny_mt(root / fam, fam, fairseq_ids=True) for fam in ("m2m100", "nllb", "t5")}
    return {**built, "marian-multi": build_tiny_opus_mt(root / "multi", multi_target=True)}


@pytest.fixture
def conversions(monkeypatch):
    """Count the conversions (the real converter runs)."""
    calls: list[str] = []
    real = mt_ct2._convert

    def counting(folder, out, quantization):
        calls.append(quantization)
        time.sleep(0.2)  # a slow conversion: a concurrent caller must wait, not convert too
        real(folder, out, quantization)

    monkeypatch.setattr(mt_ct2, "_convert", counting)
    return calls


def test_registered_with_the_builtin_engines():
    assert engines()[:4] == ("transformers", "ctranslate2", "bergamot", "openai")


def test_float32_greedy_equals_the_transformers_engine(opus):
    hf = load_mt("transformers", str(opus), device="cpu", max_new_tokens=8)
    ct = load_mt("ctranslate2", str(opus), device="cpu", max_new_tokens=8, compute_type="float32")
    a = hf.translate_detailed(TEXTS, "eng_Latn", "por_Latn")
    b = ct.translate_detailed(TEXTS, "eng_Latn", "por_Latn")
    assert [x.text for x in b] == [x.text for x in a]
    assert [(x.tokens, x.truncated) for x in b] == [(x.tokens, x.truncated) for x in a]
    assert len({x.text for x in a}) > 2 and any(x.truncated for x in a) and not all(x.truncated for x in a[:-2])
    assert b[-2].text == "" and b[-2].tokens == 0


def test_int8_on_cpu_by_default_and_in_the_cache_namespace(opus):
    ct = load_mt("ctranslate2", str(opus), device="cpu", max_new_tokens=8)
    assert ct.compute_type == "int8"
    cfg = ct.config()
    assert cfg["engine"] == "ctranslate2" and cfg["compute_type"] == "int8"
    assert cfg["revision"].startswith("sha256:") and cfg["revision"] == ct.revision
    out = ct.translate(TEXTS, "eng_Latn", "por_Latn")
    assert len(out) == len(TEXTS) and out[-2] == ""


def test_conversion_is_cached_by_content_and_quantization(opus, tmp_path, conversions, cache_dir):
    load_mt("ctranslate2", str(opus), device="cpu", compute_type="float32")
    load_mt("ctranslate2", str(opus), device="cpu", compute_type="float32", max_new_tokens=5)
    assert conversions == ["float32"]  # the second load reuses the converted folder
    load_mt("ctranslate2", str(opus), device="cpu", compute_type="int8")
    assert conversions == ["float32", "int8"]
    other = build_tiny_opus_mt(tmp_path / "other", seed=1)  # same layout, other weights: other content
    load_mt("ctranslate2", str(other), device="cpu", compute_type="int8")
    assert conversions == ["float32", "int8", "int8"]
    folders = sorted(p.name for p in (cache_dir / "models" / "ct2").iterdir() if not p.name.startswith("."))
    assert len(folders) == 3 and all(
        (cache_dir / "models" / "ct2" / f / ".mlbuild-complete").exists() for f in folders
    )


def test_two_workers_convert_once(opus, conversions):
    ref = mt_ct2.resolve_model(str(opus))
    got: list = []

    def worker():
        got.append(mt_ct2.converted_model(ref.path, ref.ref, ref.revision, "int8"))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conversions == ["int8"] and len(set(got)) == 1 and (got[0] / "model.bin").exists()


def test_unfinished_conversion_is_redone(opus, conversions):
    ref = mt_ct2.resolve_model(str(opus))
    path = mt_ct2.converted_model(ref.path, ref.ref, ref.revision, "int8")
    (path / ".mlbuild-complete").unlink()  # as if killed before the marker
    assert mt_ct2.converted_model(ref.path, ref.ref, ref.revision, "int8") == path
    assert conversions == ["int8", "int8"] and (path / ".mlbuild-complete").exists()


@pytest.mark.parametrize(
    "family,token", [("m2m100", "__ky__"), ("nllb", "kir_Cyrl"), ("t5", None), ("marian-multi", None)]
)
def test_language_codes_as_the_transformers_engine(families, family, token):
    hf = load_mt("transformers", str(families[family]), device="cpu", max_new_tokens=6)
    ct = load_mt("ctranslate2", str(families[family]), device="cpu", max_new_tokens=6, compute_type="float32")
    seen: dict = {}
    real = ct.translator.translate_batch

    def spy(source, target_prefix=None, **kw):
        seen.update(source=source, prefix=target_prefix, kw=kw)
        return real(source, target_prefix, **kw)

    ct.translator = type("Spy", (), {"translate_batch": staticmethod(spy)})()
    texts = CORPUS[:4]
    assert ct.translate(texts, "eng_Latn", "kir_Cyrl") == hf.translate(texts, "eng_Latn", "kir_Cyrl")
    if token is not None:  # NLLB / M2M100: the target token is the decoder prefix, the source token leads
        assert seen["prefix"] == [[token]] * 4
        assert seen["source"][0][0] == ("eng_Latn" if family == "nllb" else "__en__")
    else:  # text tags
        assert seen["prefix"] is None
        assert seen["source"][0][0] == {"t5": "<2ky>", "marian-multi": ">>kir<<"}[family]
    assert seen["kw"]["batch_type"] == "tokens" and seen["kw"]["beam_size"] == 1


def test_batching_by_tokens_keeps_outputs(opus):
    big = load_mt("ctranslate2", str(opus), device="cpu", max_new_tokens=8, compute_type="float32")
    small = load_mt(
        "ctranslate2", str(opus), device="cpu", max_new_tokens=8, compute_type="float32", max_batch_tokens=8
    )
    assert big.max_batch_tokens == 4096 and small.max_batch_tokens == 8
    assert small.translate(TEXTS, "eng_Latn", "por_Latn") == big.translate(TEXTS, "eng_Latn", "por_Latn")


def test_truncated_inputs_and_decoding_settings(opus):
    ct = load_mt("ctranslate2", str(opus), device="cpu", max_new_tokens=30, max_input_tokens=4, no_repeat_ngram_size=2)
    long, short = ct.translate_detailed(["the cat sits on the mat", "i"], "eng_Latn", "por_Latn")
    assert long.truncated
    assert ct.config()["decoding"] == {"no_repeat_ngram_size": 2}
    assert not short.truncated or short.tokens == 30


def test_bad_settings_are_refused_before_loading(opus):
    with pytest.raises(ValueError, match="unknown compute_type 'int4'"):
        load_mt("ctranslate2", str(opus), device="cpu", compute_type="int4")
    with pytest.raises(ValueError, match="not supported on cpu"):
        load_mt("ctranslate2", str(opus), device="cpu", compute_type="float16")
    with pytest.raises(ValueError, match="unknown ctranslate2 decoding settings \\['temperature'\\]"):
        load_mt("ctranslate2", str(opus), device="cpu", temperature=0.3)
    with pytest.raises(ValueError, match="model-loading keys \\('trust_remote_code'\\)"):
        load_mt("ctranslate2", str(opus), device="cpu", trust_remote_code=True)
    with pytest.raises(ValueError, match="needs a model"):
        load_mt("ctranslate2", None)
    assert mt_ct2.resolve_compute_type("auto", "cuda") == "int8_float16"
    assert mt_ct2.resolve_compute_type("auto", "cpu") == "int8"


def test_projection_translates_with_the_engine(opus):
    from mlbuild.pipeline.base import RunContext
    from mlbuild.steps.project_spans import ProjectSpans, ProjectSpansParams

    p = ProjectSpansParams(
        text_column="text",
        spans_column="spans",
        source_lang="eng_Latn",
        target_langs=["por_Latn"],
        engine="ctranslate2",
        model=str(opus),
        method="markers",
        decoding={"compute_type": "float32", "max_new_tokens": 8},
        device="cpu",
    )
    assert not ProjectSpans.check(p, ["row_id", "text", "spans"])
    step = ProjectSpans(p, RunContext())
    step.setup()
    assert isinstance(step.mt, mt_ct2.CTranslate2MT) and step.mt.compute_type == "float32"
    assert (
        step.mt.translate(["the cat sits on the mat"], "eng_Latn", "por_Latn")[0]
        == load_mt("transformers", str(opus), device="cpu", max_new_tokens=8).translate(
            ["the cat sits on the mat"], "eng_Latn", "por_Latn"
        )[0]
    )
