"""The dual encoder SPARC and its baselines train: open_clip towers with patch and token outputs.

Built from any open_clip model config name (``ViT-B-16``, ``ViT-L-14``, the tiny ``ViT-Tiny-8-64`` of
``sparc_eval/open_clip_configs``), with ``vision_cfg`` / ``text_cfg`` overrides. Notation of the paper (§2):

- ``f_v``: open_clip's ``VisionTransformer`` up to ``ln_post`` (applied per token); its [CLS] token stays
  inside the transformer but is never an output (App. D.3: no [CLS] for the global embeddings). The
  tower's own projection is removed.
- ``f_t``: open_clip's ``TextTransformer`` up to ``ln_final``, projection removed. Padding = ``pad_id``
  (0 for open_clip's tokenizers); the token mask keeps every other position (SOT/EOT included). The
  attention is the config's (causal for CLIP configs); ``text_cfg: {no_causal_mask: true}`` makes it
  bidirectional with padding masked out.
- ``g_v``, ``g_t``: linear adaptors (no bias) to the shared space of ``embed_dim`` (default: the
  config's ``embed_dim``, 512 for ViT-B-16 as in the paper).
- ``h_v``: "a single non-linear layer" on the pooled vision feature; the paper gives no form, we use
  ``GELU(Linear(width, width))``.

Embeddings (none l2-normalised here; the losses normalise where their definition does):

- patch embeddings ``v_p = g_v(f_v(x)_p)`` [B, P, D] and token embeddings ``t_l = g_t(f_t(x)_l)`` [B, L, D];
- global image ``v = g_v(h_v(mean_p f_v(x)_p))`` and text ``t = g_t(masked_mean_l f_t(x)_l)``: the prose of
  §2 (our default, ``h_v: true``). Listing 1 instead takes ``mean_p v_p`` and ``mean_l t_l``; by linearity
  of the adaptors that is exactly this path without ``h_v`` (``h_v: false``). The text mean always skips
  padding (Listing 1's unmasked mean would average pad positions);
- dense image output for evaluation (App. D.7): patch features "passed through the extra dense layer and
  the adapter", ``g_v(h_v(f_v(x)_p))`` (``g_v(f_v(x)_p)`` without ``h_v``), comparable with global text
  embeddings.

Temperature: a learned ``logit_scale`` = log(1/τ) (init τ = 0.07, kept ≤ log 100 by the trainer), shared
by the global and local losses as in Listing 1; ``local_temperature: separate`` adds a second one for the
fine-grained terms.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError


@dataclass
class ModelConfig:
    """What builds a ``DualEncoder``; saved in ``config.json`` so a checkpoint rebuilds itself."""

    arch: str = "ViT-B-16"
    embed_dim: int | None = None
    h_v: bool = True
    vision_cfg: dict = field(default_factory=dict)
    text_cfg: dict = field(default_factory=dict)
    quick_gelu: bool = False
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    local_temperature: str = "shared"

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        cfg = cls(**d)
        if cfg.local_temperature not in ("shared", "separate"):
            raise ConfigError(f"{where}.local_temperature: {cfg.local_temperature!r}; expected shared or separate")
        if not 0 < cfg.init_temperature < 10:
            raise ConfigError(f"{where}.init_temperature: {cfg.init_temperature}; expected a positive temperature "
                              f"such as 0.07")
        return cfg

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class EncoderOutputs:
    """One batch through the dual encoder. Global embeddings [B, D]; ``patch_embeds`` [B, P, D];
    ``token_embeds`` [B, L, D] with ``token_mask`` [B, L] (True = real token); ``logit_scale`` and
    ``logit_scale_local`` are 1/τ (scalars; the same tensor when the temperature is shared). Fields a loss
    does not need may be None."""

    image_embeds: torch.Tensor | None
    text_embeds: torch.Tensor | None
    patch_embeds: torch.Tensor | None
    token_embeds: torch.Tensor | None
    token_mask: torch.Tensor
    logit_scale: torch.Tensor
    logit_scale_local: torch.Tensor

    _BATCHED = ("image_embeds", "text_embeds", "patch_embeds", "token_embeds", "token_mask")

    def _map(self, fn) -> EncoderOutputs:
        return EncoderOutputs(**{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                                 for f in fields(self)})

    def detach(self) -> EncoderOutputs:
        return self._map(torch.Tensor.detach)

    def float(self) -> EncoderOutputs:
        """float16/bfloat16 embeddings -> float32 (masks untouched)."""
        return self._map(lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t)

    @staticmethod
    def cat(parts: list[EncoderOutputs], scale_from: int) -> EncoderOutputs:
        """Concatenate micro-batches along the batch; the temperatures come from ``parts[scale_from]``."""
        out = {name: (None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts]))
               for name in EncoderOutputs._BATCHED}
        return EncoderOutputs(**out, logit_scale=parts[scale_from].logit_scale,
                              logit_scale_local=parts[scale_from].logit_scale_local)


def _tower_cfgs(cfg: ModelConfig) -> tuple[dict, dict, int]:
    from ..open_clip_configs import open_clip_module

    open_clip = open_clip_module()
    base = open_clip.get_model_config(cfg.arch)
    if base is None:
        raise UnknownNameError("open_clip architecture", cfg.arch, open_clip.list_models())
    vision = {**base["vision_cfg"], **cfg.vision_cfg}
    text = {**base["text_cfg"], **cfg.text_cfg}
    embed_dim = int(cfg.embed_dim or base["embed_dim"])
    return vision, text, embed_dim


def default_preprocessing(cfg: ModelConfig) -> dict:
    """How images and texts are prepared, for training and evaluation alike (recorded in checkpoints):
    the tower's square resolution, bicubic resize of the shorter side + centre crop, CLIP's mean/std, the
    text context length. No augmentation (the paper mentions none)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    vision, text, _ = _tower_cfgs(cfg)
    size = vision.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return {"resolution": int(size), "interpolation": "bicubic", "crop": "center",
            "mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD),
            "context_length": int(text.get("context_length", 77)), "tokenizer": f"open_clip:{cfg.arch}"}


def build_tokenizer(cfg: ModelConfig):
    """The open_clip tokenizer of ``cfg.arch`` at the text tower's context length (ids [B, L], pad 0)."""
    _, text, _ = _tower_cfgs(cfg)
    return _tokenizer(cfg.arch, int(text.get("context_length", 77)))


@functools.lru_cache(maxsize=8)
def _tokenizer(arch: str, context_length: int):
    from ..open_clip_configs import open_clip_module

    return open_clip_module().get_tokenizer(arch, context_length=context_length)


class DualEncoder(nn.Module):
    """Image and text towers + adaptors (+ ``h_v``) + learned temperature(s); see the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from open_clip.model import _build_text_tower, _build_vision_tower
        from open_clip.transformer import TextTransformer, VisionTransformer

        self.config = cfg
        vision, text, dim = _tower_cfgs(cfg)
        try:
            self.visual = _build_vision_tower(dim, vision, cfg.quick_gelu)
            self.text = _build_text_tower(dim, text, cfg.quick_gelu)
        except (TypeError, ValueError, AssertionError) as e:
            raise ConfigError(f"model: cannot build the open_clip towers of {cfg.arch!r} with these overrides ({e})") \
                from None
        if not isinstance(self.visual, VisionTransformer) or self.visual.attn_pool is not None:
            raise ConfigError(f"model.arch {cfg.arch!r}: the image tower must be a plain open_clip ViT "
                              f"(found {type(self.visual).__name__}); patch outputs need one token per patch")
        if not isinstance(self.text, TextTransformer) or self.text.cls_emb is not None:
            raise ConfigError(f"model.arch {cfg.arch!r}: the text tower must be open_clip's TextTransformer without "
                              f"an appended [CLS] (found {type(self.text).__name__})")
        if self.text.attn_mask is None:
            self.text.use_pad_mask = True  # bidirectional text: padding is never attended
        self.visual.proj = None
        self.text.text_projection = None
        wv, wt = self.visual.transformer.width, self.text.width
        self.embed_dim = dim
        self.h_v = nn.Sequential(nn.Linear(wv, wv), nn.GELU()) if cfg.h_v else None
        self.g_v = nn.Linear(wv, dim, bias=False)
        self.g_t = nn.Linear(wt, dim, bias=False)
        nn.init.normal_(self.g_v.weight, std=wv ** -0.5)
        nn.init.normal_(self.g_t.weight, std=wt ** -0.5)
        init = math.log(1.0 / cfg.init_temperature)
        self.logit_scale = nn.Parameter(torch.tensor(init))
        self.logit_scale_local = nn.Parameter(torch.tensor(init)) if cfg.local_temperature == "separate" else None

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.visual.grid_size)

    @property
    def pad_id(self) -> int:
        return int(self.text.pad_id)

    # -- tower features ---------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """f_v: [B, 3, H, W] -> per-patch features [B, P, width] (after ``ln_post``, [CLS] dropped)."""
        v = self.visual
        x = v.transformer(v._embeds(images))
        return v.ln_post(x)[:, 1:]

    def text_features(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_t: ids [B, L] -> (per-token features [B, L, width] after ``ln_final``, mask [B, L] bool)."""
        t = self.text
        x, attn_mask = t._embeds(ids)
        x = t.transformer(x, attn_mask=attn_mask)
        return t.ln_final(x), ids != t.pad_id

    # -- embeddings -------------------------------------------------------------------------------
    def _global_image(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = feats.mean(dim=1)
        return self.g_v(self.h_v(pooled) if self.h_v is not None else pooled)

    def _global_text(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(feats.dtype)
        pooled = (feats * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return self.g_t(pooled)

    def temperatures(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit_scale, logit_scale_local) as 1/τ."""
        scale = self.logit_scale.exp()
        local = self.logit_scale_local.exp() if self.logit_scale_local is not None else scale
        return scale, local

    def forward(self, images: torch.Tensor, ids: torch.Tensor, need_global_image: bool = True,
                need_global_text: bool = True, need_dense: bool = True) -> EncoderOutputs:
        """One batch through both towers; the outputs not needed are None (and not computed)."""
        fv = self.image_features(images)
        ft, mask = self.text_features(ids)
        scale, local = self.temperatures()
        return EncoderOutputs(
            image_embeds=self._global_image(fv) if need_global_image else None,
            text_embeds=self._global_text(ft, mask) if need_global_text else None,
            patch_embeds=self.g_v(fv) if need_dense else None,
            token_embeds=self.g_t(ft) if need_dense else None,
            token_mask=mask, logit_scale=scale, logit_scale_local=local)

    # -- evaluation paths (the ``sparc:`` adapter) ------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embedding [B, D] (not normalised)."""
        return self._global_image(self.image_features(images))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Global text embedding [B, D] (not normalised)."""
        return self._global_text(*self.text_features(ids))

    def encode_image_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Dense image output [B, P, D] in the global space: g_v(h_v(f_v)) per patch (App. D.7)."""
        feats = self.image_features(images)
        return self.g_v(self.h_v(feats) if self.h_v is not None else feats)

    def encode_text_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings [B, L, D] (g_t(f_t), the local-loss space) and the mask [B, L]."""
        feats, mask = self.text_features(ids)
        return self.g_t(feats), mask

