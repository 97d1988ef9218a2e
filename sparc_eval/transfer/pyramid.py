"""ViTDet's simple feature pyramid: multi-scale maps from the single map of a plain ViT.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ECCV 2022), as in
mmdetection's ``projects/ViTDet`` ``SimpleFPN``: from the stride-``p`` map, stride ``p/4`` comes from
two 2x2 transposed convolutions (LayerNorm + GELU between), ``p/2`` from one, ``p`` as is, ``2p`` from
2x2 max-pooling; each branch then has a 1x1 and a 3x3 convolution, each followed by LayerNorm. Any
power-of-two ratio between the patch stride and a target stride is built the same way (patch 8:
strides 4, 8, 16, 32 come from one deconvolution, identity, and 2x and 4x pooling); other ratios
(patch 14) resample the map bilinearly. An extra level (stride 2x the last) by 1x1 max-pooling with
stride 2 serves the RPN's stride-64 anchors, as ``num_outs=5`` in mmdet.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (ViTDet's ``LN2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Resample(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (max(1, round(x.shape[-2] * self.scale)), max(1, round(x.shape[-1] * self.scale)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _scale_ops(channels: int, scale: float) -> tuple[list[nn.Module], int]:
    """Modules changing resolution by ``scale`` and their output channels."""
    k = math.log2(scale)
    if not k.is_integer():
        return [_Resample(scale)], channels
    k = int(k)
    ops: list[nn.Module] = []
    if k < 0:
        return [nn.MaxPool2d(kernel_size=2 ** -k, stride=2 ** -k)], channels
    dim = channels
    for i in range(k):
        if i:
            ops += [LayerNorm2d(dim), nn.GELU()]
        ops.append(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
        dim //= 2
    return ops, dim


class SimpleFeaturePyramid(nn.Module):
    """``inputs[-1]`` ``[B, in_channels, H/in_stride, W/in_stride]`` -> a tuple of maps with
    ``out_channels`` channels at ``strides`` (plus one extra level at twice the last stride when
    ``extra_level``)."""

    def __init__(self, in_channels: int, in_stride: int, out_channels: int = 256,
                 strides: tuple[int, ...] | list[int] = (4, 8, 16, 32), extra_level: bool = True):
        super().__init__()
        self.strides = list(strides)
        self.extra_level = extra_level
        self.branches = nn.ModuleList()
        for s in self.strides:
            ops, dim = _scale_ops(in_channels, in_stride / s)
            ops += [nn.Conv2d(dim, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                    nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)]
            self.branches.append(nn.Sequential(*ops))

    def forward(self, inputs) -> tuple[torch.Tensor, ...]:
        x = inputs[-1]
        outs = [branch(x) for branch in self.branches]
        if self.extra_level:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
