"""Session fixtures shared by every test: a tiny fastText LID model trained on the fly, and a
helper to write small recipes. Tests build their own tiny data and never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LID_LINES = {
    "en": [
        "the cat sits on the mat",
        "where is the train station",
        "this is a good book to read",
        "the weather is nice today",
        "we walk to the river in the morning",
        "please open the window",
    ],
    "pt": [
        "o gato está no tapete",
        "onde fica a estação de trem",
        "este é um bom livro para ler",
        "o tempo está bom hoje",
        "nós andamos até o rio de manhã",
        "por favor abra a janela",
    ],
    "ky": [
        "мышык килемде отурат",
        "поезд бекети кайда",
        "бул окууга жакшы китеп",
        "бүгүн аба ырайы жакшы",
        "биз эртең менен дарыяга барабыз",
        "сураныч терезени ач",
    ],
    "kk": [
        "мысық кілемде отыр",
        "вокзал қайда орналасқан",
        "бұл оқуға жақсы кітап",
        "бүгін ауа райы жақсы",
        "біз таңертең өзенге барамыз",
        "терезені ашыңызшы",
    ],
}


@pytest.fixture(scope="session")
def tiny_lid(tmp_path_factory) -> Path:
    """A fastText supervised model with labels en/pt/ky/kk, trained in a second."""
    import fasttext

    d = tmp_path_factory.mktemp("lid")
    train = d / "train.txt"
    with open(train, "w", encoding="utf-8") as f:
        for _ in range(30):
            for lang, lines in LID_LINES.items():
                for line in lines:
                    f.write(f"__label__{lang} {line}\n")
    model = fasttext.train_supervised(
        str(train), epoch=25, lr=0.5, minn=2, maxn=4, dim=16, verbose=0, seed=1, thread=1
    )
    path = d / "tiny_lid.ftz"
    model.save_model(str(path))
    return path


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe TOML (and optional data files) into a fresh folder; return the recipe path."""

    def _write(text: str, files: dict[str, str | bytes] | None = None, name: str = "recipe.toml") -> Path:
        for rel, content in (files or {}).items():
            p = tmp_path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture(scope="session")
def s3_work():
    """A local S3 server (moto) with an empty bucket; returns ``s3://mlbuild-test``. The endpoint and
    dummy credentials go to the environment, where s3fs (and Ray workers started later) find them."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="mlbuild-test")
    yield "s3://mlbuild-test"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
