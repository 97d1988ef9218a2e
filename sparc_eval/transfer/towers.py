"""Vision towers taken out of loaded models: the part of the backbone bridge that knows each model family.

``tower_from_adapter(adapter)`` returns a ``VisionTower``: an ``nn.Module`` holding a *copy* of exactly
the vision weights a dense backbone uses (so fine-tuning never changes the adapter other tasks use,
and no unused parameter reaches DDP), mapping an image batch ``[B, 3, H, W]`` normalised with the
model's own mean/std to feature maps:

- plain ViTs (open_clip ``VisionTransformer``, transformers CLIP and SigLIP vision models): one map
  ``[B, D, H/p, W/p]`` of the last block's patch tokens (class token dropped), at stride ``p`` (the
  patch size); positional embeddings are resampled (bicubic) to any input size, so detection runs at
  1024 px on a ViT trained at 224 px. ``final_norm=True`` applies the tower's final LayerNorm
  (``ln_post`` / ``post_layernorm``), as for the linear segmentation probe;
- hierarchical ConvNets (open_clip's timm ConvNeXt towers): the four stage outputs at strides 4, 8,
  16, 32.

Which module is the vision tower: an adapter may provide ``transfer_tower(final_norm=...)`` itself
(the hook for model families this module does not know); otherwise ``adapter.model.visual`` (open_clip
models, and our SPARC checkpoints, whose dual encoder is built from open_clip towers),
``adapter.module.visual`` (``py:`` modules) or ``adapter.model.vision_model`` (transformers).

Layer ids for layer-wise learning-rate decay: 0 for the embeddings, ``i + 1`` for block ``i``,
``num_layers + 1`` for the final norm (ConvNeXt: 0 for the stem, ``k + 1`` for stage ``k``).
"""
from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ModelLoadError


class VisionTower(nn.Module):
    """Base of towers. ``channels[i]`` and ``strides[i]`` describe output map ``i``; ``hierarchical``
    says whether the maps already form a pyramid (else there is one map at the patch stride)."""

    kind: str = ""
    hierarchical: bool = False
    channels: list[int]
    strides: list[int]
    num_layers: int

    def __init__(self):
        super().__init__()
        self.grad_checkpointing = False

    def layer_id(self, name: str) -> int:
        """Layer index of parameter ``name`` (relative to the tower) for layer-wise lr decay."""
        raise NotImplementedError

    @staticmethod
    def no_weight_decay(name: str, param: torch.Tensor) -> bool:
        """Biases, norm weights, class and position embeddings get no weight decay (as ViTDet/BEiT)."""
        return param.ndim <= 1 or name.endswith(".bias") or name in ("cls_token", "pos_embed")

    def _run_blocks(self, x: torch.Tensor, blocks, call) -> torch.Tensor:
        for blk in blocks:
            if self.grad_checkpointing and self.training and x.requires_grad:
                x = checkpoint(call, blk, x, use_reentrant=False)
            else:
                x = call(blk, x)
        return x

    def describe(self) -> dict:
        return {"kind": self.kind, "channels": list(self.channels), "strides": list(self.strides),
                "num_layers": self.num_layers, "hierarchical": self.hierarchical,
                "parameters": sum(p.numel() for p in self.parameters())}


def _block_layer(name: str, num_layers: int, prefix: str = "blocks.") -> int:
    m = re.match(rf"^{re.escape(prefix)}(\d+)\.", name)
    return int(m.group(1)) + 1 if m else num_layers + 1


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int],
                       prefix: int) -> torch.Tensor:
    """Position embeddings ``[prefix + gh*gw, D]`` resampled (bicubic) to ``new_grid`` -> ``[1, prefix + n, D]``."""
    pos = pos.reshape(-1, pos.shape[-1])
    if tuple(grid) == tuple(new_grid):
        return pos.unsqueeze(0)
    head, body = pos[:prefix], pos[prefix:]
    d = body.shape[-1]
    body = body.reshape(1, grid[0], grid[1], d).permute(0, 3, 1, 2)
    body = F.interpolate(body.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos.dtype)
    body = body.permute(0, 2, 3, 1).reshape(-1, d)
    return torch.cat([head, body], 0).unsqueeze(0)


class OpenClipViT(VisionTower):
    """open_clip ``VisionTransformer`` (class token, ``ln_pre``, residual blocks, ``ln_post``)."""

    kind = "open_clip-vit"

    def __init__(self, visual: nn.Module, final_norm: bool = False):
        super().__init__()
        self.patch_embed = visual.conv1
        self.cls_token = visual.class_embedding
        self.pos_embed = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.blocks = visual.transformer.resblocks
        self.batch_first = getattr(visual.transformer, "batch_first", True)
        self.norm = visual.ln_post if final_norm else None
        self.grid = tuple(visual.grid_size)
        self.patch = int(visual.patch_size[0])
        width = int(self.patch_embed.out_channels)
        self.channels, self.strides, self.num_layers = [width], [self.patch], len(self.blocks)

    @staticmethod
    def _call(blk, x):
        return blk(x)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(images)
        b, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.cls_token.reshape(1, 1, d).to(x.dtype).expand(b, 1, d)
        x = torch.cat([cls, x], 1) + resample_pos_embed(self.pos_embed, self.grid, (gh, gw), 1).to(x.dtype)
        x = self.ln_pre(x)
        if not self.batch_first:
            x = x.transpose(0, 1)
        x = self._run_blocks(x, self.blocks, self._call)
        if not self.batch_first:
            x = x.transpose(0, 1)
        tokens = x[:, 1:]
        if self.norm is not None:
            tokens = self.norm(tokens)
        return [tokens.transpose(1, 2).reshape(b, d, gh, gw)]

    def layer_id(self, name: str) -> int:
        if name.split(".")[0] in ("patch_embed", "cls_token", "pos_embed", "ln_pre"):
            return 0
        return _block_layer(name, self.num_layers)


class HFViT(VisionTower):
    """transformers CLIP (class token, ``pre_layrnorm``) or SigLIP (no class token) vision model."""

    def __init__(self, vision_model: nn.Module, final_norm: bool = False):
        super().__init__()
        self.embeddings = vision_model.embeddings
        self.ln_pre = getattr(vision_model, "pre_layrnorm", None)
        self.blocks = vision_model.encoder.layers
        self.norm = vision_model.post_layernorm if final_norm else None
        self.prefix = 1 if hasattr(self.embeddings, "class_embedding") else 0
        self.kind = "hf-clip" if self.prefix else "hf-siglip"
        conv = self.embeddings.patch_embedding
        self.patch = int(conv.kernel_size[0])
        self.channels, self.strides, self.num_layers = [int(conv.out_channels)], [self.patch], len(self.blocks)

    @staticmethod
    def _call(blk, x):
        out = blk(x, None)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = images.shape
        gh, gw = h // self.patch, w // self.patch
        x = self.embeddings(images, interpolate_pos_encoding=True)
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        x = self._run_blocks(x, self.blocks, self._call)
        tokens = x[:, self.prefix:]
        if self.norm is not None:
            tokens = self.norm(tokens)
        return [tokens.transpose(1, 2).reshape(b, -1, gh, gw)]

    def layer_id(self, name: str) -> int:
        if name.split(".")[0] in ("embeddings", "ln_pre"):
            return 0
        return _block_layer(name, self.num_layers)

    @staticmethod
    def no_weight_decay(name: str, param: torch.Tensor) -> bool:
        return param.ndim <= 1 or name.endswith((".bias", "class_embedding")) or "position_embedding" in name


class TimmStages(VisionTower):
    """A timm hierarchical ConvNet with ``stem`` and ``stages`` (open_clip's ConvNeXt towers)."""

    kind = "open_clip-timm"
    hierarchical = True

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.stem = trunk.stem
        self.stages = trunk.stages
        info = [f for f in trunk.feature_info if f["module"].startswith("stages")]
        self.channels = [int(f["num_chs"]) for f in info]
        self.strides = [int(f["reduction"]) for f in info]
        self.num_layers = len(self.stages)

    @staticmethod
    def _call(stage, x):
        return stage(x)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        outs = []
        for stage in self.stages:
            x = self._run_blocks(x, [stage], self._call)
            outs.append(x)
        return outs

    def layer_id(self, name: str) -> int:
        if name.startswith("stem."):
            return 0
        return _block_layer(name, self.num_layers, "stages.")


def _find_vision_module(adapter) -> tuple[str, nn.Module]:
    for owner in ("model", "module"):
        m = getattr(adapter, owner, None)
        if m is None:
            continue
        visual = getattr(m, "visual", None)
        if isinstance(visual, nn.Module):
            return "open_clip", visual
        vision = getattr(m, "vision_model", None)
        if isinstance(vision, nn.Module):
            return "hf", vision
    name = getattr(getattr(adapter, "identity", None), "name", type(adapter).__name__)
    raise ModelLoadError(f"model {name!r}: no vision tower found for detection/segmentation transfer (looked for "
                         f"adapter.transfer_tower(), .model.visual, .module.visual and .model.vision_model); "
                         f"give the adapter a transfer_tower(final_norm) method returning a "
                         f"sparc_eval.transfer.towers.VisionTower")


def tower_from_adapter(adapter, final_norm: bool = False) -> VisionTower:
    """A ``VisionTower`` holding a deep copy of ``adapter``'s vision weights (see the module docstring)."""
    hook = getattr(adapter, "transfer_tower", None)
    if callable(hook):
        tower = hook(final_norm=final_norm)
        if not isinstance(tower, VisionTower):
            raise ModelLoadError(f"{type(adapter).__name__}.transfer_tower() returned {type(tower).__name__}, "
                                 f"expected a VisionTower")
        return tower
    family, module = _find_vision_module(adapter)
    if family == "open_clip":
        if hasattr(module, "conv1") and hasattr(module, "transformer") and hasattr(module, "class_embedding"):
            return OpenClipViT(copy.deepcopy(module), final_norm)
        trunk = getattr(module, "trunk", None)
        if trunk is not None and hasattr(trunk, "stem") and hasattr(trunk, "stages") \
                and hasattr(trunk, "feature_info"):
            if final_norm:
                raise ModelLoadError(f"{type(trunk).__name__}: the linear probe on patch features needs a ViT; "
                                     f"hierarchical ConvNets have no patch tokens")
            return TimmStages(copy.deepcopy(trunk))
        raise ModelLoadError(f"open_clip vision tower {type(module).__name__} is not supported for transfer "
                             f"(supported: VisionTransformer, timm towers with stem/stages such as ConvNeXt)")
    if hasattr(module, "embeddings") and hasattr(module, "encoder"):
        return HFViT(copy.deepcopy(module), final_norm)
    raise ModelLoadError(f"transformers vision model {type(module).__name__} is not supported for transfer")


def pad_divisor(tower: VisionTower) -> int:
    """Input sides must be multiples of this: the largest output stride and the patch size."""
    return math.lcm(32, *tower.strides) if all(s & (s - 1) == 0 for s in tower.strides) else 32
