"""Run-time guard on what reaches ``from_pretrained`` (mlbuild/models/loading.py), for every backend."""

from __future__ import annotations

import pytest

from mlbuild.errors import RecipeError
from mlbuild.models.loading import check_decoding, loader_kwargs
from mlbuild.pipeline.params import LOADER_KEYS


def test_loader_kwargs_are_explicit_only():
    assert loader_kwargs() == {"trust_remote_code": False}
    assert loader_kwargs(trust_remote_code=True, revision="abc", gguf_file="m.gguf") == {
        "trust_remote_code": True,
        "revision": "abc",
        "gguf_file": "m.gguf",
    }
    for bad in ("false", "yes", 1, None):
        with pytest.raises(TypeError, match="trust_remote_code must be True or False"):
            loader_kwargs(trust_remote_code=bad)


@pytest.mark.parametrize("key", sorted(LOADER_KEYS))
def test_every_loader_key_is_refused_in_decoding(key):
    with pytest.raises(RecipeError) as e:
        check_decoding({key: 1, "num_beams": 4}, "steps[1] (x.v1) -> generation")
    assert e.value.problems[0][0] == "steps[1] (x.v1) -> generation" and repr(key) in str(e.value)
    assert check_decoding({"num_beams": 4, "length_penalty": 1.0}) == {"num_beams": 4, "length_penalty": 1.0}


@pytest.mark.parametrize(
    "build",
    [
        lambda: __import__("mlbuild.models.rerank", fromlist=["x"]).CrossEncoderScorer("m", trust_remote_code="no"),
        lambda: __import__("mlbuild.models.hidden", fromlist=["x"]).HiddenStates("m", trust_remote_code="no"),
        lambda: __import__("mlbuild.models.embed", fromlist=["x"]).TransformersEmbedder("m", trust_remote_code="no"),
        lambda: __import__("mlbuild.models.align", fromlist=["x"]).EmbeddingAligner("m", trust_remote_code="no"),
    ],
    ids=["rerank", "hidden", "embed", "align"],
)
def test_backends_refuse_a_non_bool_trust_remote_code_before_loading(build, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "m" is no local folder: nothing could be loaded anyway
    with pytest.raises(TypeError, match="trust_remote_code must be True or False"):
        build()
