"""The base pieces every MT engine shares: :class:`Translation`, :class:`MTBackend`,
:func:`refuse_loader_keys`, and the language-code conventions of seq2seq models
(:class:`Seq2SeqConventions`). Engines import them from here (or from :mod:`mlbuild.models.mt`, which
re-exports them), so an engine module never imports the registry that loads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import langs
from ..pipeline.params import LOADER_KEYS


@dataclass
class Translation:
    """One translated text. ``tokens`` = generated tokens when the engine reports them (else None);
    ``truncated`` = generation used the whole ``max_new_tokens`` budget (so it was most likely cut short), or
    the input was longer than the engine accepts (``max_input_tokens``) and was cut."""

    text: str
    tokens: int | None = None
    truncated: bool = False


class MTBackend:
    engine: str = ""

    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def revision(self) -> str | None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Declared settings that change outputs (engine, model, revision, decoding): a cache namespace."""
        return {"engine": self.engine, "model": self.id, "revision": self.revision}

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        return [t.text for t in self.translate_detailed(texts, src, tgt)]

    def translate_detailed(self, texts: list[str], src: str, tgt: str) -> list[Translation]:
        raise NotImplementedError


def refuse_loader_keys(settings: dict[str, Any], what: str = "MT decoding settings") -> None:
    """Raise when ``settings`` carries a key that changes how a model is loaded (``LOADER_KEYS``)."""
    bad = sorted(k for k in settings if k in LOADER_KEYS)
    if bad:
        raise ValueError(
            f"{what} may not carry model-loading keys ({', '.join(repr(k) for k in bad)}): remote code, "
            "revisions, credentials and placement are the backend's own explicit arguments"
        )


def iso1(code: str) -> str:
    """``por_Latn`` -> ``pt`` (ISO 639-1 where it exists, else the 639-3 code)."""
    return langs.hub_code(code)


# ---------------------------------------------------------------------------------------------- conventions
def empty_translations(texts: list[str]) -> list[Translation | None]:
    """One slot per text: an empty text translates to an empty string (never sent to a model), the others
    are None until translated."""
    return [None if t.strip() else Translation("", 0, False) for t in texts]


class Seq2SeqConventions:
    """Language-code conventions of a seq2seq MT model, read from its tokenizer's vocabulary (``self.tok``)
    and model type (``self.model_type``); shared by the transformers and ctranslate2 engines."""

    tok: Any
    model_type: str = ""
    max_input_tokens: int = 512

    def encode_sources(self, texts: list[str], src: str, tgt: str) -> tuple[list[int], list[list[int]], int | None]:
        """(positions of the non-empty texts, their token ids with the source-language prefix, cut at
        ``max_input_tokens``, the forced target-language token or None). Sets the tokenizer's source
        language: call it under the backend's lock."""
        todo = [i for i, t in enumerate(texts) if t.strip()]
        family, prefix, forced = self.convention(src, tgt)
        prefix = self._set_source(family, src) + prefix
        enc = self.tok([prefix + texts[i] for i in todo], truncation=True, max_length=self.max_input_tokens)
        return todo, enc["input_ids"] if todo else [], forced

    def _has(self, token: str) -> bool:
        tid = self.tok.convert_tokens_to_ids(token)
        return tid is not None and tid != self.tok.unk_token_id

    def convention(self, src: str, tgt: str) -> tuple[str, str, int | None]:
        """(family, text prefix, forced BOS id) for a language pair."""
        t3, t1 = tgt.split("_")[0], iso1(tgt)
        if self._has(tgt):  # NLLB: eng_Latn / por_Latn tokens
            return "nllb", "", self.tok.convert_tokens_to_ids(tgt)
        if self._has(f"__{t1}__"):  # M2M100
            return "m2m100", "", self.tok.convert_tokens_to_ids(f"__{t1}__")
        for tag in (f"<2{t1}>", f"<2{t3}>"):  # MADLAD-400 / T5 target tags
            if self._has(tag):
                return "t5-tag", tag + " ", None
        for tag in (f">>{t3}<<", f">>{t1}<<", f">>{tgt}<<"):  # multi-target Marian (opus-mt-en-ROMANCE)
            if self._has(tag):
                return "marian-multi", tag + " ", None
        if self.model_type in ("t5", "mt5", "umt5"):  # plain T5 task prefix
            return "t5-task", f"translate {langs.display_name(src)} to {langs.display_name(tgt)}: ", None
        return "plain", "", None

    def _set_source(self, family: str, src: str) -> str:
        """Set the source language on tokenizers that take it; return a text prefix otherwise."""
        if family == "nllb":
            if hasattr(self.tok, "src_lang"):
                self.tok.src_lang = src
                return ""
            return src + " "
        if family == "m2m100":
            if hasattr(self.tok, "src_lang"):
                self.tok.src_lang = iso1(src)
                return ""
            return f"__{iso1(src)}__ "
        return ""
