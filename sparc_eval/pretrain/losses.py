"""SPARC's objective (Bica et al. 2024, arXiv 2401.09865, §2 and Listing 1) and the baselines it compares
against (CLIP, FILIP, PACL, GLoRIA, MGCA), as plain functions plus ``nn.Module`` wrappers registered by
name for the training config (``LOSSES``, ``build_loss``).

Functions take embeddings from ``pretrain.model.DualEncoder`` (adapted, not normalised) and a
``logit_scale`` = 1/τ; every loss is computed in float32 for float16/bfloat16 inputs (in float64 for float64 inputs).

Decisions where the paper's prose and Listing 1 disagree (paper notes §1; the other choice is an option):

- Global embeddings: the prose path, ``g_v(h_v(avg_pool f_v))`` and ``g_t(masked avg_pool f_t)``; Listing 1's
  mean of adapted embeddings is the model option ``h_v: false`` (see ``pretrain/model.py``).
- Local-loss normalisation: Listing 1's token-weighted mean over all valid tokens of the batch
  (``reduction="tokens"``, default); Eq. 6's mean per caption, then over the B captions, is
  ``reduction="captions"``.
- Temperature: one learned τ shared by the global and local losses (Listing 1); the model option
  ``local_temperature: separate`` learns a second one for the fine-grained terms of every loss.
- Min-max with a constant row (max = min, e.g. a padding token against identical patches): the paper has
  no ε; we define ŝ = 1 for every patch of such a row (all patches are the maximum), so each row keeps a
  valid alignment distribution (uniform) and no ε changes which patches pass the 1/P threshold. ``eps > 0``
  gives the common ``(s - min) / (max - min + eps)`` variant instead.
- Padding: masked as candidates (logits set to -1e9, as Listing 1's ``INF``) and as queries (rows dropped
  before the mean); fully padded captions contribute nothing. Padded rows still pass through min-max and
  threshold, harmlessly.
- λ_g = 0.5 (App. D.4); λ_f was swept over {0.5, 1, 5, 10} and the chosen value is not reported: default 1.0.

Distributed training (``pretrain.distributed``): batch-wide terms (every global InfoNCE, FILIP, PACL, GLoRIA,
MGCA's prototypes) gather their inputs from all ranks with gradients, so every rank computes the loss of
the global batch, as open_clip's ``ClipLoss(gather_with_grad=True)``. Per-sample terms (SPARC's local loss,
MGCA's token loss) stay on each rank: the rank's sum is divided by the all-reduced count (valid tokens, or
captions) and multiplied by the world size W, because DDP averages gradients over ranks. The terms a
module returns are this rank's contributions; their mean over ranks is the loss of the global batch, and
the gradients DDP averages are exactly those of the single-process loss on the global batch. Under
gradient accumulation the trainer hands the modules the whole accumulated batch (open_clip's feature cache
with the current micro-batch live), so the same holds.

Baselines (paper §5; "learned temperature for all methods"):

- ``filip_loss``: late interaction on l2-normalised patch and token embeddings; image→text similarity =
  mean over patches of the max over the text's valid tokens, text→image = mean over valid tokens of the max
  over patches; symmetric InfoNCE. Token dropping (paper: 20%) is read as dropping a random 20% of each
  image's patch tokens before the interaction (in training only).
- ``pacl_loss``: patch weights = softmax over patches of ``attention_scale`` · cos(patch, global text);
  compatibility = cos(weighted sum of patches, text) for every image-text pair; symmetric InfoNCE. The
  module applies PACL's residual two-layer MLP to the patch embeddings first.
- ``gloria_local_loss``: GLoRIA's local loss (marshuang80/gloria ``local_loss``: softmax over words, then
  over regions with temp1; cos(word, context); log-sum-exp over words with temp2) with the SPARC paper's
  changes: word-region similarities divided by √D and a learned temperature in place of temp3.
- ``mgca_token_loss`` (MGCA's token-wise cross-modal alignment, the public code's softmax attention with
  temperature 0.1, both directions, without the [CLS]-attention weighting, as in the paper) and
  ``mgca_prototype_loss`` (cross-modal prototype alignment, Sinkhorn-Knopp codes, ε = 0.05, 3 iterations).
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed as D
from ..errors import ConfigError
from ..registry import Registry
from .model import EncoderOutputs

_MASKED = -1e9  # logit of a padded candidate (Listing 1's INF)
_MASKED_COS = -1e4  # a padded token in max/log-sum-exp reductions over cosines


def _up(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _symmetric_xent(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the row-wise and column-wise cross-entropy of a square [N, N] matrix with targets on the diagonal."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (Eq. 1): [B, D] x [B, D] (normalised here), pair i matches i."""
    img = F.normalize(_up(image_embeds), dim=-1)
    txt = F.normalize(_up(text_embeds), dim=-1)
    return _symmetric_xent(_up(logit_scale) * img @ txt.t())


# -- SPARC -----------------------------------------------------------------------------------------
ALIGNMENTS = ("sparse", "dense", "softmax")
REDUCTIONS = ("tokens", "captions")


def sparc_alignment_weights(token_embeds: torch.Tensor, patch_embeds: torch.Tensor, *, threshold: float | None = None,
                            alignment: str = "sparse", eps: float = 0.0) -> torch.Tensor:
    """Alignment weights a [B, L, P] (Eqs. 2-4): similarity of the un-normalised embeddings, min-max over the
    patches of each token, zero below ``threshold`` (default 1/P), rows L1-normalised. ``alignment``:
    ``sparse`` (the paper), ``dense`` (no threshold: the "no sparsity" ablation), ``softmax`` (softmax over
    patches of the raw similarity: the "softmax" ablation)."""
    s = torch.einsum("bld,bpd->blp", token_embeds, patch_embeds)
    if alignment == "softmax":
        return s.softmax(dim=-1)
    lo = s.amin(dim=-1, keepdim=True)
    span = s.amax(dim=-1, keepdim=True) - lo
    if eps > 0:
        s_hat = (s - lo) / (span + eps)
    else:
        flat = span <= 0
        s_hat = torch.where(flat, torch.ones_like(s), (s - lo) / torch.where(flat, torch.ones_like(span), span))
    if alignment == "sparse":
        sigma = 1.0 / s.shape[-1] if threshold is None else threshold
        s_hat = torch.where(s_hat >= sigma, s_hat, torch.zeros_like(s_hat))
    return s_hat / s_hat.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(s_hat.dtype).tiny)


def _within_sample_xent(queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
                        logit_scale: torch.Tensor) -> torch.Tensor:
    """Per-query cross-entropy [B, N]: query n of sample b must pick key n among the valid keys of the same
    sample (padded keys masked as candidates, padded queries set to 0). queries, keys: [B, N, D]."""
    logits = logit_scale * torch.einsum("bmd,bnd->bmn", queries, keys)
    logits = logits.masked_fill(~mask[:, None, :], _MASKED)
    ce = -logits.log_softmax(dim=-1).diagonal(dim1=1, dim2=2)
    return torch.where(mask, ce, torch.zeros_like(ce))


def _reduce_per_token(per_token: torch.Tensor, mask: torch.Tensor, reduction: str,
                      normalizer: torch.Tensor | float | None) -> torch.Tensor:
    if reduction == "tokens":
        total = per_token.sum()
        denom = mask.sum() if normalizer is None else normalizer
    else:
        total = (per_token.sum(dim=1) / mask.sum(dim=1).clamp_min(1)).sum()
        denom = mask.shape[0] if normalizer is None else normalizer
    return total / torch.as_tensor(denom, dtype=total.dtype, device=total.device).clamp_min(1)


def sparc_local_loss(token_embeds: torch.Tensor, patch_embeds: torch.Tensor, token_mask: torch.Tensor,
                     logit_scale: torch.Tensor, *, threshold: float | None = None, alignment: str = "sparse",
                     eps: float = 0.0, reduction: str = "tokens",
                     normalizer: torch.Tensor | float | None = None) -> torch.Tensor:
    """SPARC's fine-grained loss (Eqs. 2-6, Listing 1), within each image-text pair.

    token_embeds [B, L, D], patch_embeds [B, P, D]: adapted, not normalised; token_mask [B, L] bool.
    Grouped vision embeddings c_l = Σ_p a_lp v_p are l2-normalised after grouping; each token and its group
    are contrasted against the other valid tokens/groups of the same caption, both directions, averaged.
    ``reduction``: ``tokens`` (sum over valid tokens / their count) or ``captions`` (per-caption mean, then
    sum / number of captions). ``normalizer`` replaces that count (the global count under DDP/accumulation).
    """
    t = _up(token_embeds)
    v = _up(patch_embeds)
    mask = token_mask.bool()
    a = sparc_alignment_weights(t, v, threshold=threshold, alignment=alignment, eps=eps)
    c = F.normalize(torch.einsum("blp,bpd->bld", a, v), dim=-1)
    tn = F.normalize(t, dim=-1)
    scale = _up(logit_scale)
    per_token = 0.5 * (_within_sample_xent(c, tn, mask, scale) + _within_sample_xent(tn, c, mask, scale))
    return _reduce_per_token(per_token, mask, reduction, normalizer)


# -- FILIP -----------------------------------------------------------------------------------------
def drop_patches(patch_embeds: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random ``round((1 - ratio) * P)`` (at least 1) patches of each image: [B, P, D] -> [B, P', D]."""
    b, p, _ = patch_embeds.shape
    keep = max(1, round((1.0 - ratio) * p))
    if keep >= p:
        return patch_embeds
    noise = torch.rand(b, p, generator=generator, device="cpu").to(patch_embeds.device)
    idx = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    return patch_embeds.gather(1, idx[..., None].expand(-1, -1, patch_embeds.shape[-1]))


def filip_similarities(patch_embeds: torch.Tensor, token_embeds: torch.Tensor, token_mask: torch.Tensor,
                       chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FILIP's late-interaction similarities between every image i and text j: (image→text [Bi, Bt]: mean over
    patches of the max over valid tokens; text→image [Bi, Bt]: mean over valid tokens of the max over
    patches), on l2-normalised embeddings. ``chunk_size`` texts at a time bound the [Bi, c, P, L] tensor."""
    v = F.normalize(_up(patch_embeds), dim=-1)
    t = F.normalize(_up(token_embeds), dim=-1)
    mask = token_mask.bool()
    step = chunk_size or t.shape[0]
    i2t, t2i = [], []
    for j in range(0, t.shape[0], step):
        tj, mj = t[j:j + step], mask[j:j + step]
        sim = torch.einsum("ipd,jld->ijpl", v, tj)
        best_token = sim.masked_fill(~mj[None, :, None, :], _MASKED_COS).max(dim=-1).values  # [Bi, c, P]
        i2t.append(best_token.mean(dim=-1))
        best_patch = sim.max(dim=2).values  # [Bi, c, L]
        m = mj[None].to(best_patch.dtype)
        t2i.append((best_patch * m).sum(dim=-1) / m.sum(dim=-1).clamp_min(1))
    return torch.cat(i2t, dim=1), torch.cat(t2i, dim=1)


def filip_loss(patch_embeds: torch.Tensor, token_embeds: torch.Tensor, token_mask: torch.Tensor,
               logit_scale: torch.Tensor, *, token_drop: float = 0.0, generator: torch.Generator | None = None,
               chunk_size: int | None = None) -> torch.Tensor:
    """FILIP's contrastive loss: image→text InfoNCE on the image→text late-interaction similarities, text→image
    on the text→image ones, averaged. patch_embeds [B, P, D], token_embeds [B, L, D], token_mask [B, L]."""
    if token_drop > 0:
        patch_embeds = drop_patches(patch_embeds, token_drop, generator)
    i2t, t2i = filip_similarities(patch_embeds, token_embeds, token_mask, chunk_size)
    scale = _up(logit_scale)
    labels = torch.arange(i2t.shape[0], device=i2t.device)
    return 0.5 * (F.cross_entropy(scale * i2t, labels) + F.cross_entropy(scale * t2i.t(), labels))


# -- PACL ------------------------------------------------------------------------------------------
def pacl_loss(patch_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, *,
              attention_scale: float = 10.0) -> torch.Tensor:
    """PACL: for image i and text j, weights softmax_p(attention_scale · cos(v_ip, t_j)), compatibility
    cos(Σ_p w_ijp v_ip, t_j); symmetric InfoNCE over the [B, B] compatibilities. patch_embeds [B, P, D],
    text_embeds [B, D]."""
    v = _up(patch_embeds)
    t = F.normalize(_up(text_embeds), dim=-1)
    w = (attention_scale * torch.einsum("ipd,jd->ijp", F.normalize(v, dim=-1), t)).softmax(dim=-1)
    pooled = F.normalize(torch.einsum("ijp,ipd->ijd", w, v), dim=-1)
    compat = torch.einsum("ijd,jd->ij", pooled, t)
    return _symmetric_xent(_up(logit_scale) * compat)


# -- GLoRIA ----------------------------------------------------------------------------------------
def gloria_local_loss(patch_embeds: torch.Tensor, token_embeds: torch.Tensor, token_mask: torch.Tensor,
                      logit_scale: torch.Tensor, *, temp1: float = 4.0, temp2: float = 5.0,
                      scale_by_sqrt_dim: bool = True, chunk_size: int | None = None) -> torch.Tensor:
    """GLoRIA's local loss for every image i and text j: word-region scores (÷√D), softmax over the text's
    valid words, ×temp1, softmax over regions -> context c_l per word; R_l = cos(c_l, w_l);
    S_ij = log Σ_l exp(temp2 R_l) over valid words; symmetric InfoNCE over logit_scale · S."""
    v = _up(patch_embeds)
    w = _up(token_embeds)
    mask = token_mask.bool()
    div = math.sqrt(v.shape[-1]) if scale_by_sqrt_dim else 1.0
    step = chunk_size or w.shape[0]
    cols = []
    for j in range(0, w.shape[0], step):
        wj, mj = w[j:j + step], mask[j:j + step]
        att = torch.einsum("ipd,jld->ijlp", v, wj) / div
        att = att.masked_fill(~mj[None, :, :, None], _MASKED).softmax(dim=2)  # over words
        att = (temp1 * att).softmax(dim=-1)  # over regions
        ctx = torch.einsum("ijlp,ipd->ijld", att, v)
        r = F.cosine_similarity(ctx, wj[None].expand_as(ctx), dim=-1, eps=1e-8)
        cols.append(torch.logsumexp((temp2 * r).masked_fill(~mj[None], _MASKED_COS), dim=-1))
    return _symmetric_xent(_up(logit_scale) * torch.cat(cols, dim=1))


# -- MGCA ------------------------------------------------------------------------------------------
def mgca_token_loss(token_embeds: torch.Tensor, patch_embeds: torch.Tensor, token_mask: torch.Tensor,
                    logit_scale: torch.Tensor, *, attention_temperature: float = 0.1,
                    normalizer: torch.Tensor | float | None = None) -> torch.Tensor:
    """MGCA's token-wise cross-modal alignment, within each pair, on l2-normalised embeddings.

    Words: each word attends over the patches (softmax of cos/attention_temperature) -> normalised
    cross-modal embedding; word and own embedding contrasted against the caption's other words, both
    directions, mean over valid words. Patches: likewise attending over the valid words, mean over patches.
    Loss per pair = word term + patch term; sum over pairs / ``normalizer`` (default: the number of pairs).
    """
    w = F.normalize(_up(token_embeds), dim=-1)
    v = F.normalize(_up(patch_embeds), dim=-1)
    mask = token_mask.bool()
    scale = _up(logit_scale)
    sim = torch.einsum("bld,bpd->blp", w, v) / attention_temperature
    word_ctx = F.normalize(torch.einsum("blp,bpd->bld", sim.softmax(dim=-1), v), dim=-1)
    words = 0.5 * (_within_sample_xent(w, word_ctx, mask, scale) + _within_sample_xent(word_ctx, w, mask, scale))
    patch_att = sim.transpose(1, 2).masked_fill(~mask[:, None, :], _MASKED).softmax(dim=-1)  # [B, P, L]
    patch_ctx = F.normalize(torch.einsum("bpl,bld->bpd", patch_att, w), dim=-1)
    all_patches = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
    patches = 0.5 * (_within_sample_xent(v, patch_ctx, all_patches, scale)
                     + _within_sample_xent(patch_ctx, v, all_patches, scale))
    per_pair = words.sum(dim=1) / mask.sum(dim=1).clamp_min(1) + patches.mean(dim=1)
    denom = per_pair.shape[0] if normalizer is None else normalizer
    return per_pair.sum() / torch.as_tensor(denom, dtype=per_pair.dtype, device=per_pair.device).clamp_min(1)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp codes (SwAV / MGCA): scores [K, B] (positive) -> assignment [B, K], rows sum to 1."""
    q = scores / scores.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q * ((1.0 / k) / q.sum(dim=1, keepdim=True))
        q = q * ((1.0 / b) / q.sum(dim=0, keepdim=True))
    return (q / q.sum(dim=0, keepdim=True)).t()


def mgca_prototype_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, prototypes: torch.Tensor, *,
                        epsilon: float = 0.05, iterations: int = 3, temperature: float = 0.2) -> torch.Tensor:
    """MGCA's cross-modal prototype alignment: Sinkhorn codes of each modality (from exp(score/epsilon),
    no gradient) are the targets of the other modality's softmax(score/temperature) over the K prototypes.
    image_embeds, text_embeds [B, D] (normalised here); prototypes [K, D] used as given."""
    img = F.normalize(_up(image_embeds), dim=-1)
    txt = F.normalize(_up(text_embeds), dim=-1)
    protos = prototypes.to(img.dtype).t()
    img, txt = img @ protos, txt @ protos
    img_code = sinkhorn(torch.exp(img / epsilon).t(), iterations)
    txt_code = sinkhorn(torch.exp(txt / epsilon).t(), iterations)
    i2t = -(img_code * (txt / temperature).log_softmax(dim=1)).sum(dim=1).mean()
    t2i = -(txt_code * (img / temperature).log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (i2t + t2i)


# -- modules (what the trainer builds by name) ------------------------------------------------------
def _global_count(n: torch.Tensor | int, device) -> torch.Tensor:
    return D.all_reduce_sum(torch.as_tensor(n, dtype=torch.float32, device=device))


def _global_clip(out: EncoderOutputs) -> torch.Tensor:
    return clip_loss(D.gather_with_grad(out.image_embeds), D.gather_with_grad(out.text_embeds), out.logit_scale)


class _Loss(nn.Module):
    """Base: ``forward(out, generator=None) -> {"loss": total, term: value, ...}`` (this rank's contributions)."""

    uses_global_image = True  # needs the global image embeddings
    uses_global_text = True  # needs the global text embeddings
    uses_dense = True  # needs patch/token embeddings and the local temperature
    full_graph = True  # every model parameter gets a gradient (else DDP must look for unused ones)

    @staticmethod
    def _check(where: str, value, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"loss.{where}: {value!r}; expected {expected}")


class ClipLoss(_Loss):
    """CLIP: the global InfoNCE only."""

    uses_dense = False

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        g = _global_clip(out)
        return {"loss": g, "global": g}


class SparcLoss(_Loss):
    """SPARC (Eq. 7): ``global_weight`` · global InfoNCE + ``local_weight`` · ``sparc_local_loss``."""

    def __init__(self, global_weight: float = 0.5, local_weight: float = 1.0, threshold: float | None = None,
                 alignment: str = "sparse", eps: float = 0.0, reduction: str = "tokens"):
        super().__init__()
        self._check("alignment", alignment, alignment in ALIGNMENTS, " or ".join(ALIGNMENTS))
        self._check("reduction", reduction, reduction in REDUCTIONS, " or ".join(REDUCTIONS))
        self._check("threshold", threshold, threshold is None or 0 <= threshold <= 1, "null (1/P) or a number in [0, 1]")
        self._check("eps", eps, eps >= 0, "a number >= 0")
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.kw = {"threshold": threshold, "alignment": alignment, "eps": eps, "reduction": reduction}
        # without the global term the global paths (h_v, a separate global temperature) may get no gradient
        self.uses_global_image = self.uses_global_text = self.full_graph = self.global_weight != 0

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mask = out.token_mask
        n = mask.sum() if self.kw["reduction"] == "tokens" else mask.shape[0]
        local = sparc_local_loss(out.token_embeds, out.patch_embeds, mask, out.logit_scale_local,
                                 normalizer=_global_count(n, mask.device), **self.kw) * D.world_size()
        terms = {"local": local}
        loss = self.local_weight * local
        if self.global_weight:
            terms["global"] = _global_clip(out)
            loss = loss + self.global_weight * terms["global"]
        return {"loss": loss, **terms}


class FilipLoss(_Loss):
    """FILIP (``filip_weight`` · ``filip_loss``), optionally + ``global_weight`` · CLIP (the paper's CLIP+FILIP)."""

    def __init__(self, filip_weight: float = 1.0, global_weight: float = 0.0, token_drop: float = 0.2,
                 chunk_size: int | None = None):
        super().__init__()
        self._check("token_drop", token_drop, 0 <= token_drop < 1, "a fraction in [0, 1)")
        self.filip_weight, self.global_weight = float(filip_weight), float(global_weight)
        self.token_drop, self.chunk_size = float(token_drop), chunk_size
        self.uses_global_image = self.uses_global_text = self.full_graph = self.global_weight != 0

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        f = filip_loss(D.gather_with_grad(out.patch_embeds), D.gather_with_grad(out.token_embeds),
                       D.gather_tensor(out.token_mask), out.logit_scale_local,
                       token_drop=self.token_drop if self.training else 0.0, generator=generator,
                       chunk_size=self.chunk_size)
        terms = {"filip": f}
        loss = self.filip_weight * f
        if self.global_weight:
            terms["global"] = _global_clip(out)
            loss = loss + self.global_weight * terms["global"]
        return {"loss": loss, **terms}


class PaclLoss(_Loss):
    """PACL: a residual two-layer MLP on the patch embeddings, then ``pacl_loss`` (+ optional CLIP term)."""

    def __init__(self, embed_dim: int, pacl_weight: float = 1.0, global_weight: float = 0.0,
                 attention_scale: float = 10.0):
        super().__init__()
        self.patch_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.pacl_weight, self.global_weight = float(pacl_weight), float(global_weight)
        self.attention_scale = float(attention_scale)
        # the global text embeddings are PACL's queries; the global image ones serve the optional CLIP term only
        self.uses_global_image = self.full_graph = self.global_weight != 0

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        patches = out.patch_embeds + self.patch_mlp(out.patch_embeds)
        p = pacl_loss(D.gather_with_grad(patches), D.gather_with_grad(out.text_embeds), out.logit_scale_local,
                      attention_scale=self.attention_scale)
        terms = {"pacl": p}
        loss = self.pacl_weight * p
        if self.global_weight:
            terms["global"] = _global_clip(out)
            loss = loss + self.global_weight * terms["global"]
        return {"loss": loss, **terms}


class GloriaLoss(_Loss):
    """GLoRIA: ``global_weight`` · CLIP + ``local_weight`` · ``gloria_local_loss``."""

    def __init__(self, global_weight: float = 1.0, local_weight: float = 1.0, temp1: float = 4.0, temp2: float = 5.0,
                 scale_by_sqrt_dim: bool = True, chunk_size: int | None = None):
        super().__init__()
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.kw = {"temp1": float(temp1), "temp2": float(temp2), "scale_by_sqrt_dim": bool(scale_by_sqrt_dim),
                   "chunk_size": chunk_size}

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        local = gloria_local_loss(D.gather_with_grad(out.patch_embeds), D.gather_with_grad(out.token_embeds),
                                  D.gather_tensor(out.token_mask), out.logit_scale_local, **self.kw)
        g = _global_clip(out)
        return {"loss": self.global_weight * g + self.local_weight * local, "global": g, "local": local}


class MgcaLoss(_Loss):
    """MGCA: λ1 · CLIP (ITA) + λ2 · ``mgca_token_loss`` (TCA) + λ3 · ``mgca_prototype_loss`` (CPA; off with
    ``num_prototypes: 0``). The paper's setting: λ1 = λ2 = λ3 = 1, 500 prototypes."""

    def __init__(self, embed_dim: int, global_weight: float = 1.0, local_weight: float = 1.0,
                 prototype_weight: float = 1.0, num_prototypes: int = 500, attention_temperature: float = 0.1,
                 epsilon: float = 0.05, sinkhorn_iterations: int = 3, prototype_temperature: float = 0.2):
        super().__init__()
        self._check("num_prototypes", num_prototypes, int(num_prototypes) >= 0, "an integer >= 0")
        self.global_weight, self.local_weight = float(global_weight), float(local_weight)
        self.prototype_weight = float(prototype_weight)
        self.attention_temperature = float(attention_temperature)
        self.proto_kw = {"epsilon": float(epsilon), "iterations": int(sinkhorn_iterations),
                         "temperature": float(prototype_temperature)}
        self.prototypes = nn.Linear(embed_dim, int(num_prototypes), bias=False) if num_prototypes else None

    def forward(self, out: EncoderOutputs, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        n = _global_count(out.token_mask.shape[0], out.token_mask.device)
        local = mgca_token_loss(out.token_embeds, out.patch_embeds, out.token_mask, out.logit_scale_local,
                                attention_temperature=self.attention_temperature, normalizer=n) * D.world_size()
        img, txt = D.gather_with_grad(out.image_embeds), D.gather_with_grad(out.text_embeds)
        g = clip_loss(img, txt, out.logit_scale)
        terms = {"global": g, "local": local}
        loss = self.global_weight * g + self.local_weight * local
        if self.prototypes is not None:
            with torch.no_grad():
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
            terms["prototype"] = mgca_prototype_loss(img, txt, self.prototypes.weight, **self.proto_kw)
            loss = loss + self.prototype_weight * terms["prototype"]
        return {"loss": loss, **terms}


LOSSES: Registry[type[_Loss]] = Registry("loss", "sparc_eval.losses", {
    name: f"{__name__}:{cls}" for name, cls in (("clip", "ClipLoss"), ("sparc", "SparcLoss"), ("filip", "FilipLoss"),
                                                ("pacl", "PaclLoss"), ("gloria", "GloriaLoss"), ("mgca", "MgcaLoss"))
}, base=_Loss)


def loss_params(name: str) -> list[str]:
    """The options a loss accepts in the training config (``embed_dim`` comes from the model)."""
    sig = inspect.signature(LOSSES.get(name).__init__)
    return [p for p in sig.parameters if p not in ("self", "embed_dim")]


def build_loss(name: str, params: dict | None = None, embed_dim: int | None = None) -> _Loss:
    """The loss module registered as ``name`` with ``params`` (validated: unknown keys list the valid ones)."""
    cls = LOSSES.get(name)
    params = dict(params or {})
    valid = loss_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"loss.params: unknown option(s) {', '.join(unknown)} for loss {name!r}; "
                          f"expected some of {', '.join(valid) or '(none)'}")
    if "embed_dim" in inspect.signature(cls.__init__).parameters:
        params["embed_dim"] = embed_dim
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss.params for {name!r}: {e}") from None
