"""Text encoding at the texts' real length: exact padding trimming, length order, de-duplication.

A text tower padded to its context (77 tokens for CLIP) spends most of its compute on padding when
captions are short. Cutting a batch to its longest sequence is *exact* only when no kept output
depends on a cut position:

- the attention is causal (a position sees only earlier ones), or bidirectional with the padding
  masked out of the keys (``use_pad_mask``; then the cut must keep every real token);
- no embedding is appended after the padding (CoCa's [CLS] sits at position L and sees every
  position before it, its positional embedding is the L-th);
- the pooled output is read at a real token: the end token (``argmax``/``eos``), or a masked mean
  over real tokens (``sparc:`` models).

Bidirectional towers that attend to their padding (SigLIP, MobileCLIP's argmax configs without a
causal mask) and towers pooled at the last position must keep their trained padding. ``decide``
checks these conditions on the tower's structure; ``tower_tokens`` runs an open_clip text
transformer on cut ids (slicing the positional embedding and the attention mask, which stock
open_clip does not). Sorting texts by length before batching (``length_sorted``) makes the cut
short for every batch; ``dedupe`` lets identical texts be encoded once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

POOLED_AT_TOKEN = ("argmax", "eos")


@dataclass(frozen=True)
class TrimDecision:
    """Whether a text tower may run on cut sequences, and why (recorded in preprocessing)."""

    trim: bool
    reason: str


@dataclass
class TextTower:
    """The parts of an open_clip text transformer a cut forward needs: views of the model's own modules
    (``open_clip.model.CLIP`` keeps them on the model, ``TextTransformer`` on itself)."""

    token_embedding: torch.nn.Module
    positional_embedding: torch.Tensor
    transformer: torch.nn.Module
    ln_final: torch.nn.Module
    text_projection: torch.nn.Module | torch.Tensor | None
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None
    pad_id: int
    heads: int
    cls_emb: torch.Tensor | None = None
    use_pad_mask: bool = False


def open_clip_text_tower(model) -> TextTower | None:
    """The text tower of an open_clip model (``CLIP``, ``CustomTextCLIP``, ``CoCa``) or of a bare
    ``TextTransformer``; None when the text encoder is something else (a Hugging Face text model)."""
    from open_clip.transformer import TextTransformer

    text = model if isinstance(model, TextTransformer) else getattr(model, "text", None)
    if isinstance(text, TextTransformer):
        return TextTower(text.token_embedding, text.positional_embedding, text.transformer, text.ln_final,
                         text.text_projection, text.attn_mask, text.pool_type, getattr(text, "eos_id", None),
                         int(text.pad_id), int(text.heads), text.cls_emb, bool(text.use_pad_mask))
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_pool_type")
    if text is None and all(hasattr(model, a) for a in needed):
        return TextTower(model.token_embedding, model.positional_embedding, model.transformer, model.ln_final,
                         model.text_projection, model.attn_mask, model.text_pool_type,
                         getattr(model, "text_eos_id", None), 0, int(model.transformer.resblocks[0].attn.num_heads))
    return None


def decide(tower: TextTower | None, pooling: str = "token", enabled: bool = True) -> TrimDecision:
    """Whether cutting the padding is exact for ``tower`` (see the module docstring). ``pooling``:
    ``token`` (the tower's own pooling at one position), ``mean`` (a mean over real tokens) or ``none``
    (every real token is an output)."""
    if not enabled:
        return TrimDecision(False, "turned off (trim_text: false)")
    if tower is None:
        return TrimDecision(False, "the text encoder is not an open_clip text transformer")
    if tower.cls_emb is not None:
        return TrimDecision(False, "a [CLS] embedding is appended after the padding (CoCa-style)")
    if tower.attn_mask is None and not tower.use_pad_mask:
        return TrimDecision(False, "bidirectional attention that attends to the padding")
    if pooling == "token" and tower.pool_type not in POOLED_AT_TOKEN:
        return TrimDecision(False, f"pooled at {tower.pool_type!r}, not at the end token")
    attention = "causal attention" if tower.attn_mask is not None else "padding masked out of the attention"
    pooled = {"token": f"{tower.pool_type} pooling", "mean": "a mean over real tokens",
              "none": "per-token outputs"}[pooling]
    return TrimDecision(True, f"exact: {attention}, {pooled}, no appended [CLS]")


def requested(pre: dict) -> bool:
    """Whether preprocessing asks for trimming (``trim_text``, default true)."""
    value = pre.get("trim_text", True)
    return value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "no", "off")


def record(pre: dict, decision: TrimDecision) -> None:
    """Write a decision into an adapter's preprocessing (it becomes part of text cache keys and results)."""
    pre["trim_text"] = decision.trim
    pre["text_padding"] = "longest" if decision.trim else "max_length"
    pre["text_padding_reason"] = decision.reason


def tower_decisions(pre: dict, tower: TextTower | None, pooling: str) -> tuple[TrimDecision, TrimDecision]:
    """(pooled embeddings, per-token outputs) decisions for an open_clip text tower as ``pre`` asks;
    the pooled one is recorded in ``pre``."""
    enabled = requested(pre)
    pooled, tokens = decide(tower, pooling, enabled), decide(tower, "none", enabled)
    record(pre, pooled)
    return pooled, tokens


def pool_index(tower: TextTower, ids: torch.Tensor) -> torch.Tensor:
    """Position of the pooled token of each row of ``ids`` [B, L] (open_clip's ``text_global_pool``)."""
    if tower.pool_type == "eos":
        return (ids == tower.eos_id).int().argmax(dim=-1)
    return ids.argmax(dim=-1)


def real_length(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Per row: one past the last non-padding position (0 for an all-padding row)."""
    positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)
    return ((ids != pad_id) * positions).amax(dim=-1)


def cut_length(tower: TextTower, ids: torch.Tensor, pooling: str = "token") -> int:
    """The shortest length that keeps every output exact: the pooled position under causal attention,
    and every real token when attention is bidirectional (pad-masked) or the pooling is a mean."""
    need = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    if pooling == "token":
        need = pool_index(tower, ids) + 1
    if pooling != "token" or tower.attn_mask is None:
        need = torch.maximum(need, real_length(ids, tower.pad_id))
    return max(int(need.max()), 1) if ids.shape[0] else 1


def tower_tokens(tower: TextTower, ids: torch.Tensor) -> torch.Tensor:
    """Final token features [B, L, width] (after ``ln_final``) of ``ids`` [B, L], L at most the context:
    the positional embedding and the causal mask are sliced to L, and the padding mask (pad-masked
    towers) is built for L, as open_clip builds them for the full context."""
    cast = tower.transformer.get_cast_dtype()
    n = ids.shape[1]
    x = tower.token_embedding(ids).to(cast) + tower.positional_embedding[:n].to(cast)
    mask = tower.attn_mask[:n, :n] if tower.attn_mask is not None else None
    if tower.use_pad_mask:
        keys = (ids != tower.pad_id).unsqueeze(1).expand(-1, n, -1)
        additive = torch.zeros(keys.shape, dtype=x.dtype, device=x.device).masked_fill_(~keys, float("-inf"))
        additive = additive.repeat_interleave(tower.heads, 0)
        mask = additive if mask is None else mask.unsqueeze(0) + additive
    x = tower.transformer(x, attn_mask=mask)
    return tower.ln_final(x)


def project(tower: TextTower, x: torch.Tensor) -> torch.Tensor:
    """The tower's text projection (a Linear or a matrix; identity when it has none)."""
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Module) else x @ proj


def encode_cut(tower: TextTower, ids: torch.Tensor) -> torch.Tensor:
    """Pooled, projected text features [B, D] of full-context ``ids`` [B, C], computed on the batch cut
    to ``cut_length`` (exact only where ``decide`` says so)."""
    index = pool_index(tower, ids)
    n = cut_length(tower, ids)
    x = tower_tokens(tower, ids[:, :n])
    return project(tower, x[torch.arange(x.shape[0], device=x.device), index])


def pad_tokens(tokens: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token output padded back to a fixed ``length`` (the context), padding positions zeroed, so
    dense outputs do not depend on how texts were batched."""
    tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0)
    extra = length - tokens.shape[1]
    if extra > 0:
        tokens = torch.nn.functional.pad(tokens, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(mask, (0, extra), value=False)
    return tokens, mask


def dedupe(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """(unique texts in first-occurrence order, index of each input text in that list)."""
    first: dict[str, int] = {}
    inverse = [first.setdefault(t, len(first)) for t in texts]
    return list(first), inverse


def length_sorted(indices: Sequence[int], lengths: Sequence[int] | None) -> list[int]:
    """``indices`` ordered by decreasing ``lengths[i]`` (stable; unchanged without lengths), so that
    consecutive batches hold texts of similar length and the longest batch comes first."""
    if lengths is None:
        return list(indices)
    return sorted(indices, key=lambda i: -lengths[i])
