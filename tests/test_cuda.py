"""The CUDA paths (marked ``cuda``: on a machine without CUDA they are deselected and the summary counts
them, see conftest). AMP training steps are finite and close to fp32; the fp16 gradient scaler trains and
checkpoints; evaluation on the GPU equals the CPU's within a sample. ``bench/gpu_check.sh`` runs the
same paths at full size, with timings."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda

REPO = Path(__file__).resolve().parent.parent
DEVICE = "cuda"
CAPTIONS = ["a red circle to the left of a small blue square", "two yellow stars", "a large green triangle",
            "a white cross above a black diamond"] * 4


def _step(loss_name: str, precision: str) -> tuple[float, list[torch.Tensor]]:
    """One forward/backward of a fixed tiny dual encoder on a fixed batch: (loss, gradients)."""
    from sparc_eval.pretrain.losses import build_loss
    from sparc_eval.pretrain.model import DualEncoder, ModelConfig, build_tokenizer
    from sparc_eval.pretrain.train import TrainModule

    dev = torch.device(DEVICE)
    cfg = ModelConfig(arch="ViT-Tiny-8-64")
    torch.manual_seed(0)
    enc = DualEncoder(cfg)
    module = TrainModule(enc, build_loss(loss_name, {}, enc.embed_dim), dev, precision).to(dev)
    images = torch.randn(len(CAPTIONS), 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ids = build_tokenizer(cfg)(CAPTIONS)
    out = module(images.to(dev), ids.to(dev))
    out["loss"].backward()
    return out["loss"].item(), [p.grad for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize("loss_name", ["sparc", "clip"])
def test_bf16_training_step_is_finite_and_close_to_fp32(loss_name):
    ref, _ = _step(loss_name, "fp32")
    value, grads = _step(loss_name, "bf16")
    assert math.isfinite(value) and grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert value == pytest.approx(ref, rel=0.02)


def test_fp16_training_with_the_gradient_scaler_trains_and_resumes(small_world, tmp_path):
    from sparc_eval.pretrain.config import load_config
    from sparc_eval.pretrain.train import train

    sets = {"steps": 4, "batch_size": 8, "precision": "fp16", "device": DEVICE, "eval.every": 0,
            "checkpoint_every": 2, "log_every": 1, "data.root": str(small_world), "data.num_workers": 0,
            "output_dir": str(tmp_path / "run")}
    out = train(load_config(REPO / "configs" / "shapes-sparc.yaml", sets), progress=False, log=lambda m: None)
    assert out["step"] == 4 and math.isfinite(out["loss"])
    state = torch.load(tmp_path / "run" / "checkpoint-4" / "training_state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the scaler's state is checkpointed
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    again = train(load_config(REPO / "configs" / "shapes-sparc.yaml", {**sets, "steps": 6}), resume=True,
                  progress=False, log=lambda m: None)
    assert again["step"] == 6 and math.isfinite(again["loss"])


def test_evaluation_on_cuda_equals_cpu_within_a_sample(shapes_root):
    from sparc_eval.api import evaluate

    tasks = ["shapes-retrieval", "shapes-zeroshot", "shapes-zeroshot-seg"]
    kw = dict(write=False, progress=False, log=lambda m: None, limit=200, seed=0, use_cache=False)
    cpu = evaluate(f"sparc:{REPO / 'checkpoints' / 'shapes-sparc-seed0'}", tasks, device="cpu", **kw)
    gpu = evaluate(f"sparc:{REPO / 'checkpoints' / 'shapes-sparc-seed0'}", tasks, device=DEVICE, **kw)
    for c, g in zip(cpu, gpu):
        assert g.result["provenance"]["device"].startswith(DEVICE)
        tolerance = 100 / c.result["dataset"]["n_used"]
        for key, value in c.metrics.items():
            assert g.metrics[key] == pytest.approx(value, abs=tolerance), (c.task, key)
