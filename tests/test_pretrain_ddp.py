"""DDP on CPU (gloo, 2 processes under torchrun) computes the loss and the gradients of the single-process
run on the same global batch, for every loss; gradient accumulation is exact too; a run with periodic
evaluation (rank 0 evaluates outside the process group while the other rank waits) finishes.

The torchrun workers run this file as a script (``__main__`` below)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = {"arch": "ViT-Tiny-8-64", "embed_dim": 32, "vision_cfg": {"layers": 1, "width": 64, "head_width": 32},
        "text_cfg": {"layers": 1, "width": 64, "heads": 2, "context_length": 16}}
# case -> (loss section, model overrides, accumulation steps under DDP)
CASES = {
    "sparc": ({"name": "sparc", "params": {}}, {}, 1),
    "sparc-captions-accum": ({"name": "sparc", "params": {"reduction": "captions"}}, {}, 2),
    # no global term: h_v absent, and the separate global temperature gets no gradient (DDP must know)
    "sparc-local-only": ({"name": "sparc", "params": {"global_weight": 0.0}},
                         {"h_v": False, "local_temperature": "separate"}, 1),
    "clip-separate-temperature": ({"name": "clip", "params": {}}, {"local_temperature": "separate"}, 1),
    "filip": ({"name": "filip", "params": {"global_weight": 1.0, "token_drop": 0.25}}, {}, 1),
    "pacl": ({"name": "pacl", "params": {}}, {}, 1),
    "gloria": ({"name": "gloria", "params": {}}, {}, 1),
    "mgca-accum": ({"name": "mgca", "params": {"num_prototypes": 16}}, {}, 2),
}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The tiny models run as fast on one thread, and steadier on a shared machine."""


def tiny_config(world: Path, out: Path, loss: dict, model: dict | None = None, accum: int = 1, batch: int = 8,
                **top):
    from sparc_eval.pretrain.config import from_dict

    return from_dict({"name": "tiny", "seed": 3, "output_dir": str(out), "steps": 4, "batch_size": batch,
                      "accum_steps": accum, "device": "cpu", "log_every": 1, "checkpoint_every": 2,
                      "model": {**TINY, **(model or {})}, "loss": loss,
                      "data": {"format": "shapes", "root": str(world), "num_workers": 0}, **top})


def first_step(cfg) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(loss terms averaged over ranks, gradients) of the first step of ``cfg``."""
    from sparc_eval import distributed as D
    from sparc_eval.pretrain.train import Trainer

    trainer = Trainer(cfg, progress=False, log=lambda m: None)
    it = iter(trainer.loader())
    terms = trainer.accumulate([next(it) for _ in range(cfg.accum_steps)])
    mean = {k: D.all_reduce_mean(v).item() for k, v in terms.items()}
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).clone()
             for n, p in trainer.module.named_parameters()}
    return mean, grads


def _worker(world: Path, out: Path) -> None:
    from sparc_eval.distributed import shutdown

    rank = int(os.environ["RANK"])
    for case, (loss, model, accum) in CASES.items():
        terms, grads = first_step(tiny_config(world, out / "run", loss, model, accum))
        torch.save({"terms": terms, "grads": grads}, out / f"{case}-{rank}.pt")
    shutdown()


def _torchrun(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """torchrun with 2 processes; past ``timeout`` the launcher and its workers are killed (a hang fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # torchrun stops its workers (each in a session of its own) on SIGTERM
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(f"torchrun did not finish within {timeout} s: {err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_ddp_gloo_two_processes_equal_single_process(small_world, tmp_path):
    proc = _torchrun(__file__, str(small_world), str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for case, (loss, model, _) in CASES.items():
        ranks = [torch.load(tmp_path / f"{case}-{r}.pt", weights_only=True) for r in (0, 1)]
        terms, grads = first_step(tiny_config(small_world, tmp_path / "single", loss, model, accum=1))
        assert set(ranks[0]["terms"]) == set(terms), case
        for k, v in terms.items():
            assert abs(ranks[0]["terms"][k] - v) <= 1e-5 * max(1.0, abs(v)), (case, k, ranks[0]["terms"][k], v)
        for name, g in grads.items():
            torch.testing.assert_close(ranks[0]["grads"][name], ranks[1]["grads"][name], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0]["grads"][name], g, rtol=2e-4, atol=2e-6,
                                       msg=lambda m, c=case, n=name: f"{c} {n}: {m}")
        assert any(torch.count_nonzero(g) for g in grads.values())


def test_gradient_accumulation_is_exact_in_one_process(small_world, tmp_path):
    loss = {"name": "sparc", "params": {}}
    terms1, grads1 = first_step(tiny_config(small_world, tmp_path / "a", loss, accum=1))
    terms4, grads4 = first_step(tiny_config(small_world, tmp_path / "b", loss, accum=4))
    for k in terms1:
        assert abs(terms1[k] - terms4[k]) < 1e-5
    for name in grads1:
        torch.testing.assert_close(grads4[name], grads1[name], rtol=2e-4, atol=2e-6)


def test_ddp_gloo_run_with_periodic_evaluation_finishes(small_world, tmp_path):
    import yaml

    run = tmp_path / "run"
    raw = {"name": "tiny", "seed": 0, "output_dir": str(run), "steps": 4, "batch_size": 8, "device": "cpu",
           "log_every": 2, "checkpoint_every": 4, "model": TINY, "loss": {"name": "sparc"},
           "data": {"format": "shapes", "root": str(small_world), "num_workers": 0},
           "eval": {"every": 2, "tasks": ["shapes-retrieval"], "params": {"root": str(small_world)}, "limit": 16}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    proc = _torchrun("-m", "sparc_eval.pretrain", "--config", str(tmp_path / "c.yaml"), "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval"]["shapes-retrieval"] for r in log if "eval" in r}
    assert sorted(evals) == [2, 4] and all(0 <= v["mean_R@1"] <= 100 for v in evals.values())
    assert [r["step"] for r in log if "loss" in r] == [2, 4]
    assert (run / "checkpoint-4" / "model.safetensors").is_file()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
