"""Word aligners behind one interface: ``align(src_tokens, tgt_tokens) -> list[set[(i, j)]]`` (0-based word
indices, source i aligned to target j), with ``.id`` and ``.revision`` for the manifest.

- :class:`EflomalAligner`: eflomal (Bayesian IBM models, no weights), forward and reverse runs over the
  whole batch, symmetrized (``grow-diag-final-and`` by default, or ``intersection`` / ``union``).
  A statistical aligner learns from the batch itself: it is weak on a handful of sentences, so pass
  extra parallel text (``extra_src``/``extra_tgt``) when the batch is small. eflomal samples at random
  with no seed parameter, so two runs can differ slightly.
- :class:`EmbeddingAligner`: SimAlign-style alignment from the subword hidden states of any
  transformers encoder (BERT-like or a decoder's hidden states), ``argmax`` (mutual best) or
  ``itermax``; subword links map to word links.

:func:`load_aligner` builds either from recipe params; :func:`symmetrize` and :func:`itermax` are
exposed for tests and scripts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import requires
from .loading import loader_kwargs
from .resolve import resolve_model

log = logging.getLogger(__name__)

Links = set[tuple[int, int]]


# ------------------------------------------------------------------------------------------- symmetrization


def symmetrize(fwd: Links, rev: Links, method: str = "grow-diag-final-and") -> Links:
    """Combine forward (src->tgt) and reverse links, both given as (src, tgt) pairs."""
    if method == "intersection":
        return fwd & rev
    if method == "union":
        return fwd | rev
    if method not in ("grow-diag-final-and", "grow-diag-final", "grow-diag"):
        raise ValueError(f"unknown symmetrization {method!r}")
    union = fwd | rev
    a = set(fwd & rev)
    neigh = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]

    def src_aligned(i: int) -> bool:
        return any(x == i for x, _ in a)

    def tgt_aligned(j: int) -> bool:
        return any(y == j for _, y in a)

    added = True
    while added:
        added = False
        for i, j in sorted(a):
            for di, dj in neigh:
                p = (i + di, j + dj)
                if p in union and p not in a and (not src_aligned(p[0]) or not tgt_aligned(p[1])):
                    a.add(p)
                    added = True
    if method == "grow-diag":
        return a
    for links in (fwd, rev):
        for i, j in sorted(links):
            if method == "grow-diag-final-and":
                if not src_aligned(i) and not tgt_aligned(j):
                    a.add((i, j))
            elif not src_aligned(i) or not tgt_aligned(j):
                a.add((i, j))
    return a


def _read_links(path: str) -> list[Links]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            links = set()
            for tok in line.split():
                i, j = tok.split("-")
                links.add((int(i), int(j)))
            out.append(links)
    return out


class EflomalAligner:
    """eflomal over a batch of tokenized sentence pairs (plus optional extra parallel text)."""

    def __init__(
        self,
        symmetrization: str = "grow-diag-final-and",
        model: int = 3,
        n_samplers: int = 3,
        extra_src: Sequence[Sequence[str]] = (),
        extra_tgt: Sequence[Sequence[str]] = (),
    ):
        self.eflomal = requires("eflomal", "pip install eflomal==2.0.0", "the eflomal word aligner")
        self.symmetrization = symmetrization
        self.model = model
        self.n_samplers = n_samplers
        self.extra_src = [list(s) for s in extra_src]
        self.extra_tgt = [list(t) for t in extra_tgt]
        if len(self.extra_src) != len(self.extra_tgt):
            raise ValueError("extra_src and extra_tgt must have the same number of sentences")
        self.id = "eflomal"
        try:
            from importlib.metadata import version

            self.revision = version("eflomal")
        except Exception:  # version is informative only
            self.revision = "unknown"

    def align(self, src: Sequence[Sequence[str]], tgt: Sequence[Sequence[str]]) -> list[Links]:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source and {len(tgt)} target sentences")
        if not src:
            return []
        # eflomal needs a token on each side; empty sentences are aligned to nothing
        all_src = [" ".join(s) if s else "_" for s in [*src, *self.extra_src]]
        all_tgt = [" ".join(t) if t else "_" for t in [*tgt, *self.extra_tgt]]
        with tempfile.TemporaryDirectory(prefix="mlbuild-eflomal-") as d:
            fwd_p, rev_p = os.path.join(d, "fwd"), os.path.join(d, "rev")
            aligner = self.eflomal.Aligner(model=self.model, n_samplers=self.n_samplers)
            aligner.align(
                [s + "\n" for s in all_src],
                [t + "\n" for t in all_tgt],
                links_filename_fwd=fwd_p,
                links_filename_rev=rev_p,
                quiet=True,
            )
            fwd, rev = _read_links(fwd_p), _read_links(rev_p)
        out = []
        for k in range(len(src)):
            if not src[k] or not tgt[k]:
                out.append(set())
                continue
            out.append(symmetrize(fwd[k], rev[k], self.symmetrization))
        return out


# ------------------------------------------------------------------------------------------- embeddings


def argmax_links(sim: np.ndarray) -> np.ndarray:
    """Mutual best matches of a similarity matrix (m x n) -> 0/1 matrix."""
    m, n = sim.shape
    fwd = np.eye(n)[sim.argmax(axis=1)]
    bwd = np.eye(m)[sim.argmax(axis=0)]
    return fwd * bwd.T


def itermax(sim: np.ndarray, max_count: int = 2, alpha: float = 0.9) -> np.ndarray:
    """SimAlign's IterMax: mutual argmax, then repeat on the rows/columns left unaligned."""
    m, n = sim.shape
    inter = argmax_links(sim)
    if min(m, n) <= 2:
        return inter
    count = 1
    while count < max_count:
        mask_x = 1.0 - np.tile(inter.sum(1)[:, None], (1, n)).clip(0.0, 1.0)
        mask_y = 1.0 - np.tile(inter.sum(0)[None, :], (m, 1)).clip(0.0, 1.0)
        mask = (alpha * mask_x + alpha * mask_y).clip(0.0, 1.0)
        mask_zeros = 1.0 - (1.0 - mask_x) * (1.0 - mask_y)
        if mask_x.sum() < 1.0 or mask_y.sum() < 1.0:
            mask *= 0.0
            mask_zeros *= 0.0
        new_sim = sim * mask
        fwd = np.eye(n)[new_sim.argmax(axis=1)] * mask_zeros
        bwd = np.eye(m)[new_sim.argmax(axis=0)].T * mask_zeros
        new_inter = fwd * bwd
        if np.array_equal(inter + new_inter, inter):
            break
        inter = inter + new_inter
        count += 1
    return inter


class EmbeddingAligner:
    """SimAlign-style aligner over a transformers model's hidden states at ``layer``.

    Words are split into subwords by the model's tokenizer (one call per word, so no tokenizer needs
    ``is_split_into_words``); special tokens (BOS/CLS/SEP) are dropped; vectors are optionally centred
    (the mean over the sentence pair removed, which helps with the anisotropic states of decoder LMs)
    and compared by cosine; a subword link links the two words."""

    def __init__(
        self,
        model: str,
        layer: int = 8,
        method: str = "itermax",
        device: str = "auto",
        base_dir: Path | None = None,
        center: bool = False,
        batch_size: int = 16,
        max_subwords: int = 256,
        trust_remote_code: bool = False,
    ):
        if method not in ("argmax", "itermax"):
            raise ValueError(f"unknown alignment method {method!r} (known: argmax, itermax)")
        torch = requires("torch", "pip install torch==2.13.0", "the embedding aligner")
        tr = requires("transformers", "pip install transformers", "the embedding aligner")
        from .device import resolve_device

        self.torch = torch
        ref = resolve_model(model, base_dir)
        self.id, self.revision = ref.id, ref.revision
        src = str(ref.path) if ref.path is not None else model
        gguf = None
        if ref.path is not None and ref.path.is_dir():
            ggufs = sorted(ref.path.glob("*.gguf"))
            has_weights = any(ref.path.glob("*.safetensors")) or any(ref.path.glob("*.bin"))
            if ggufs and not has_weights:
                gguf = ggufs[0].name
        kw = loader_kwargs(trust_remote_code=trust_remote_code, gguf_file=gguf)
        self.tokenizer = tr.AutoTokenizer.from_pretrained(src, **kw)
        self.device = resolve_device(device)
        self.model = tr.AutoModel.from_pretrained(src, **kw).to(self.device).eval()
        n_layers = getattr(self.model.config, "num_hidden_layers", None) or getattr(
            getattr(self.model.config, "text_config", None), "num_hidden_layers", None
        )
        if n_layers is not None and not 0 <= layer <= n_layers:
            raise ValueError(f"layer {layer} out of range: {model} has {n_layers} layers (0 = embeddings)")
        self.layer = layer
        self.method = method
        self.center = center
        self.batch_size = batch_size
        self.max_subwords = max_subwords
        specials = {
            self.tokenizer.bos_token_id,
            self.tokenizer.cls_token_id,
            self.tokenizer.eos_token_id,
            self.tokenizer.sep_token_id,
            self.tokenizer.pad_token_id,
        }
        self._specials = {s for s in specials if s is not None}

    def _subwords(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        ids, owner = [], []
        for w, word in enumerate(words):
            # a leading space gives the word-initial form for BPE/SentencePiece vocabularies
            piece = self.tokenizer(word if w == 0 else " " + word, add_special_tokens=False)["input_ids"]
            piece = [t for t in piece if t not in self._specials] or piece[:1]
            ids += piece
            owner += [w] * len(piece)
        return ids[: self.max_subwords], owner[: self.max_subwords]

    def _states(
        self, sents: Sequence[Sequence[str]], layers: Sequence[int]
    ) -> list[tuple[dict[int, np.ndarray], list[int]]]:
        """Per sentence: {layer: subword states (special tokens dropped)} and each subword's word index."""
        torch = self.torch
        out = []
        tok = self.tokenizer
        prefix = (
            [tok.bos_token_id]
            if tok.bos_token_id is not None
            else ([tok.cls_token_id] if tok.cls_token_id is not None else [])
        )
        suffix = [tok.sep_token_id] if tok.cls_token_id is not None and tok.sep_token_id is not None else []
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        for b in range(0, len(sents), self.batch_size):
            chunk = [self._subwords(s) for s in sents[b : b + self.batch_size]]
            seqs = [prefix + ids + suffix for ids, _ in chunk]
            width = max(len(s) for s in seqs)
            input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
            with torch.no_grad():
                hs = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
            by_layer = {layer: hs[layer].float().cpu().numpy() for layer in layers}
            for k, (ids, owner) in enumerate(chunk):
                out.append(
                    ({layer: v[k, len(prefix) : len(prefix) + len(ids)] for layer, v in by_layer.items()}, owner)
                )
        return out

    def _links(self, sv: np.ndarray, so: list[int], tv: np.ndarray, to: list[int], method: str) -> Links:
        if not len(sv) or not len(tv):
            return set()
        if self.center:
            mean = np.concatenate([sv, tv]).mean(axis=0, keepdims=True)
            sv, tv = sv - mean, tv - mean
        sv = sv / (np.linalg.norm(sv, axis=1, keepdims=True) + 1e-9)
        tv = tv / (np.linalg.norm(tv, axis=1, keepdims=True) + 1e-9)
        sim = sv @ tv.T
        mat = itermax(sim) if method == "itermax" else argmax_links(sim)
        return {(so[i], to[j]) for i, j in zip(*np.nonzero(mat))}

    def align(self, src: Sequence[Sequence[str]], tgt: Sequence[Sequence[str]]) -> list[Links]:
        return self.align_many(src, tgt, [self.layer], [self.method])[(self.layer, self.method)]

    def align_many(
        self, src: Sequence[Sequence[str]], tgt: Sequence[Sequence[str]], layers: Sequence[int], methods: Sequence[str]
    ) -> dict[tuple[int, str], list[Links]]:
        """Links for several layers and methods from one forward pass (for layer sweeps)."""
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source and {len(tgt)} target sentences")
        s_states = self._states(src, layers)
        t_states = self._states(tgt, layers)
        out: dict[tuple[int, str], list[Links]] = {(layer, m): [] for layer in layers for m in methods}
        for (sv, so), (tv, to) in zip(s_states, t_states):
            for layer in layers:
                for m in methods:
                    out[(layer, m)].append(self._links(sv[layer], so, tv[layer], to, m))
        return out


def load_aligner(
    name: str,
    *,
    model: str | None = None,
    layer: int = 8,
    method: str = "itermax",
    symmetrization: str = "grow-diag-final-and",
    device: str = "auto",
    base_dir: Path | None = None,
    center: bool = False,
    trust_remote_code: bool = False,
):
    """``eflomal`` or ``embedding`` (with ``model``: a path, packaged name or Hub id of a transformers model)."""
    if name == "eflomal":
        return EflomalAligner(symmetrization=symmetrization)
    if name == "embedding":
        if not model:
            raise ValueError("the embedding aligner needs a model (align_model)")
        return EmbeddingAligner(
            model,
            layer=layer,
            method=method,
            device=device,
            base_dir=base_dir,
            center=center,
            trust_remote_code=trust_remote_code,
        )
    raise ValueError(f"unknown aligner {name!r} (known: eflomal, embedding)")


# ------------------------------------------------------------------------------------------- projection


def project_span(
    src_tokens: Sequence[tuple[int, int]],
    tgt_tokens: Sequence[tuple[int, int]],
    links: Links,
    start: int,
    end: int,
    max_gap: int = 2,
) -> tuple[tuple[int, int] | None, str, float]:
    """Project the source character span [start, end) through word ``links``.

    Source span -> the source tokens it overlaps -> their aligned target tokens -> one contiguous target
    span. Gaps: target tokens between two aligned ones are filled in when there are at most ``max_gap``
    of them and none is aligned to a source word outside the span; otherwise the aligned tokens split into
    blocks, the largest block is kept when it holds more than half of them, else the span is
    ``discontinuous``.

    Returns ((tgt_start, tgt_end) or None, status, confidence): status is ``ok``, ``no_tokens`` (the span
    covers no source token), ``unaligned`` (no source token of the span has a link) or ``discontinuous``;
    confidence = share of the span's source tokens with a link x share of aligned target tokens kept."""
    inside = [i for i, (s, e) in enumerate(src_tokens) if s < end and e > start]
    if not inside:
        return None, "no_tokens", 0.0
    inside_set = set(inside)
    tgt_idx = sorted({j for i, j in links if i in inside_set and 0 <= j < len(tgt_tokens)})
    if not tgt_idx:
        return None, "unaligned", 0.0
    covered = len({i for i, j in links if i in inside_set}) / len(inside)
    outside_tgt = {j for i, j in links if i not in inside_set}
    blocks: list[list[int]] = [[tgt_idx[0]]]
    for j in tgt_idx[1:]:
        gap = range(blocks[-1][-1] + 1, j)
        if len(gap) > max_gap or any(g in outside_tgt for g in gap):
            blocks.append([j])
        else:
            blocks[-1].append(j)
    best = max(blocks, key=len)
    if len(blocks) > 1 and len(best) * 2 <= len(tgt_idx):
        return None, "discontinuous", covered
    conf = covered * len(best) / len(tgt_idx)
    return (tgt_tokens[best[0]][0], tgt_tokens[best[-1]][1]), "ok", conf
