"""Greedy and beam-search decoding of a ``Captioner`` (no sampling: deterministic).

Both start from ``<bos>`` and stop at ``<eos>`` or after ``max_len - 1`` generated tokens; ``<pad>``,
``<bos>`` and ``<unk>`` are never generated and ``<eos>`` not first, so every caption has a word. Beam search
keeps ``beam_size`` hypotheses per image, extends each by its best tokens, and finally ranks finished
hypotheses by total log-probability / length**``length_penalty`` (0: raw log-probability, 1: mean per
token). ``beam_size=1`` equals greedy decoding. Each step re-runs the decoder on the whole prefix
(captions are short; no key/value cache).
"""
from __future__ import annotations

import torch

from .model import Captioner
from .vocab import BOS, EOS, PAD, UNK


def _allowed(logits: torch.Tensor, step: int) -> torch.Tensor:
    """Logits with the tokens that may not come at ``step`` (0 = first word) set to -inf."""
    banned = [PAD, BOS, UNK] + ([EOS] if step == 0 else [])
    logits = logits.clone()
    logits[..., banned] = -float("inf")
    return logits


@torch.no_grad()
def greedy(model: Captioner, patches: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
    """Token ids (without ``<bos>``, up to and excluding ``<eos>``) of each image's greedy caption."""
    max_len = max_len or model.cfg.max_len
    memory = model.encode(patches)
    seq = torch.full((patches.shape[0], 1), BOS, dtype=torch.long, device=patches.device)
    done = torch.zeros(patches.shape[0], dtype=torch.bool, device=patches.device)
    for step in range(max_len - 1):
        nxt = _allowed(model.decode(memory, seq)[:, -1], step).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        seq = torch.cat([seq, nxt[:, None]], 1)
        done |= nxt == EOS
        if bool(done.all()):
            break
    return [_strip(row) for row in seq[:, 1:].tolist()]


@torch.no_grad()
def beam_search(model: Captioner, patches: torch.Tensor, beam_size: int = 3, length_penalty: float = 0.0,
                max_len: int | None = None) -> list[list[int]]:
    """Token ids of each image's best beam (see module docstring for the ranking)."""
    max_len = max_len or model.cfg.max_len
    b, k = patches.shape[0], beam_size
    memory = model.encode(patches).repeat_interleave(k, 0)
    dev = patches.device
    seq = torch.full((b * k, 1), BOS, dtype=torch.long, device=dev)
    score = torch.full((b, k), -float("inf"), device=dev)
    score[:, 0] = 0.0
    length = torch.zeros(b, k, device=dev)
    done = torch.zeros(b, k, dtype=torch.bool, device=dev)
    for step in range(max_len - 1):
        logp = _allowed(model.decode(memory, seq)[:, -1].float().log_softmax(-1), step).view(b, k, -1)
        v = logp.shape[-1]
        # A finished beam continues only with <pad> at no cost.
        frozen = torch.full_like(logp, -float("inf"))
        frozen[..., PAD] = 0.0
        logp = torch.where(done[..., None], frozen, logp)
        cand = (score[..., None] + logp).view(b, k * v)
        score, flat = cand.topk(k, dim=1)
        beam, tok = flat // v, flat % v
        rows = (torch.arange(b, device=dev)[:, None] * k + beam).view(-1)
        seq = torch.cat([seq[rows], tok.view(-1, 1)], 1)
        prev_done = done.gather(1, beam)
        length = length.gather(1, beam) + (~prev_done).float()
        done = prev_done | (tok == EOS)
        if bool(done.all()):
            break
    ranked = score / length.clamp(min=1) ** length_penalty
    best = ranked.argmax(1)
    rows = torch.arange(b, device=dev) * k + best
    return [_strip(row) for row in seq[rows, 1:].tolist()]


def _strip(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i in (EOS, PAD):
            break
        out.append(i)
    return out
