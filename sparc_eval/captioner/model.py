"""Perceiver resampler + causal transformer decoder over frozen patch embeddings.

``Captioner(cfg)(patches [B, P, D_in], tokens [B, L]) -> logits [B, L, V]``. Patches are layer-normed,
projected to ``d_model`` and given learned position embeddings (P fixed at construction); the resampler's
``n_latents`` learned queries attend to [patches; latents] (as Flamingo's Perceiver resampler) in
``resampler_layers`` blocks; the decoder (pre-norm ``nn.TransformerDecoder``) attends causally to the
tokens and fully to the latents. The output layer shares the token embedding matrix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class CaptionerConfig:
    input_dim: int
    n_patches: int
    vocab_size: int
    d_model: int = 256
    heads: int = 4
    layers: int = 3
    n_latents: int = 16
    resampler_layers: int = 2
    max_len: int = 24
    dropout: float = 0.1

    def as_dict(self) -> dict:
        return asdict(self)


class _ResamplerBlock(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_x, self.norm_q = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(latents)
        kv = torch.cat([self.norm_x(x), q], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """[B, P, d] -> [B, n_latents, d]."""

    def __init__(self, d: int, n_latents: int, depth: int, heads: int, dropout: float):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, d) * 0.02)
        self.blocks = nn.ModuleList(_ResamplerBlock(d, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            latents = block(x, latents)
        return self.norm(latents)


class Captioner(nn.Module):
    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.in_norm = nn.LayerNorm(cfg.input_dim)
        self.in_proj = nn.Linear(cfg.input_dim, d)
        self.patch_pos = nn.Parameter(torch.randn(cfg.n_patches, d) * 0.02)
        self.resampler = PerceiverResampler(d, cfg.n_latents, cfg.resampler_layers, cfg.heads, cfg.dropout)
        self.embed = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.token_pos = nn.Parameter(torch.randn(cfg.max_len, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, 4 * d, cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.layers)
        self.out_norm = nn.LayerNorm(d)

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings [B, P, D_in] -> latents [B, n_latents, d_model]."""
        if patches.shape[1] != self.cfg.n_patches:
            raise ValueError(f"expected {self.cfg.n_patches} patches, got {patches.shape[1]}")
        x = self.in_proj(self.in_norm(patches.float())) + self.patch_pos
        return self.resampler(x)

    def decode(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] of the next token at every position of ``tokens`` [B, L] given latents.
        Right padding needs no mask: with causal attention no real position sees a later pad."""
        length = tokens.shape[1]
        x = self.embed(tokens) + self.token_pos[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=tokens.device), diagonal=1)
        h = self.decoder(x, memory, tgt_mask=causal)
        return self.out_norm(h) @ self.embed.weight.T

    def forward(self, patches: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(patches), tokens)
