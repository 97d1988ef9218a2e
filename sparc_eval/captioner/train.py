"""Training the caption decoder on precomputed patch embeddings, and captioning with it.

``train_captioner(features [N, P, D], captions per image, settings)``: each step draws ``batch_size``
images (seeded, without replacement within an epoch) and one of each image's captions at random,
and minimises teacher-forced cross-entropy (``<pad>`` ignored) with AdamW, linear warm-up then cosine
decay, gradient clipping at 1.0, and bf16 autocast on CUDA. Features live on the CPU (fp16) and
move to the device per batch. Deterministic for a seed on CPU.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .decode import beam_search, greedy
from .model import Captioner, CaptionerConfig
from .vocab import PAD, Vocabulary


@dataclass
class TrainSettings:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 200


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    parameters: int = 0

    def summary(self) -> dict:
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return {"steps": len(self.losses), "first_loss": round(self.losses[0], 4) if self.losses else None,
                "final_loss": round(sum(tail) / len(tail), 4) if tail else None, "wall_s": round(self.wall_s, 2),
                "parameters": self.parameters}


def _lr_factor(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _batches(n: int, settings: TrainSettings, gen: torch.Generator):
    """Image indices for each step: seeded permutations of 0..n-1, concatenated epoch after epoch."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(settings.steps):
        while order.numel() < settings.batch_size:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        yield order[:settings.batch_size]
        order = order[settings.batch_size:]


def train_captioner(features: torch.Tensor, captions: Sequence[Sequence[str]], vocab: Vocabulary,
                    cfg: CaptionerConfig, settings: TrainSettings, device: torch.device,
                    log: Callable[[str], None] = print) -> tuple[Captioner, TrainLog]:
    """A ``Captioner`` trained on ``features[i]`` (image i's patches) and ``captions[i]`` (its references)."""
    if features.shape[0] != len(captions) or not all(captions):
        raise ValueError("every training image needs at least one caption")
    torch.manual_seed(settings.seed)
    model = Captioner(cfg).to(device)
    encoded = [[torch.tensor(vocab.encode(c, cfg.max_len)) for c in caps] for caps in captions]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n and "latents" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos" not in n and "latents" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, settings))
    gen = torch.Generator().manual_seed(settings.seed)
    record = TrainLog(parameters=sum(p.numel() for p in model.parameters()))
    use_amp = device.type == "cuda"
    t0 = time.perf_counter()
    model.train()
    for step, idx in enumerate(_batches(features.shape[0], settings, gen)):
        pick = torch.randint(0, 1 << 30, (len(idx),), generator=gen)
        seqs = [encoded[i][int(p) % len(encoded[i])] for i, p in zip(idx.tolist(), pick.tolist())]
        tokens = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=PAD).to(device)
        patches = features[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(patches, tokens[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        record.losses.append(float(loss.detach()))
        if settings.log_every and (step + 1) % settings.log_every == 0:
            log(f"captioner step {step + 1}/{settings.steps}: loss {record.losses[-1]:.3f}")
    record.wall_s = time.perf_counter() - t0
    model.eval()
    return model, record


@torch.no_grad()
def caption_batch(model: Captioner, vocab: Vocabulary, patches: torch.Tensor, method: str = "beam",
                  beam_size: int = 3, length_penalty: float = 0.0) -> list[str]:
    """Captions of a batch of patch embeddings [B, P, D] (``method``: greedy or beam)."""
    device = next(model.parameters()).device
    patches = patches.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if method == "greedy":
            ids = greedy(model, patches)
        else:
            ids = beam_search(model, patches, beam_size, length_penalty)
    return [vocab.decode(i) for i in ids]
