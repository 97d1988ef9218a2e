"""Training end to end on the shapes world: the loss goes down, checkpoints load in the evaluator as
``sparc:DIR`` (same numbers as the in-training evaluation), a killed run resumes bit-identically, and
config errors are clear."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sparc_eval.fileio import sha256_file
from sparc_eval.pretrain.checkpoint import list_checkpoints

TINY = {"arch": "ViT-Tiny-8-64", "embed_dim": 32, "vision_cfg": {"layers": 1, "width": 64, "head_width": 32},
        "text_cfg": {"layers": 1, "width": 64, "heads": 2, "context_length": 16}}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The tiny models run as fast on one thread, and steadier on a shared machine."""


def write_config(path: Path, world: Path, out: Path, **over) -> Path:
    raw = {"name": "tiny", "seed": 0, "output_dir": str(out), "steps": 8, "batch_size": 8, "device": "cpu",
           "log_every": 1, "checkpoint_every": 4, "model": TINY, "loss": {"name": "sparc"},
           "data": {"format": "shapes", "root": str(world), "num_workers": 0},
           "optim": {"lr": 2e-3, "warmup_steps": 2, "weight_decay": 0.1, "grad_clip": 1.0}}
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    path.write_text(yaml.safe_dump(raw))
    return path


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_the_checkpoint_loads_as_sparc(small_world, tmp_path, runner, cli):
    from sparc_eval.cli.pretrain import pretrain

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", small_world, run, steps=24, batch_size=16, checkpoint_every=12,
                       eval={"every": 24, "tasks": ["shapes-retrieval"], "params": {"root": str(small_world)}})
    res = runner.invoke(pretrain, ["--config", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    log = read_log(run)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 24 and all(r["lr"] > 0 and r["samples_per_s"] > 0 for r in log if "loss" in r)
    assert {"global", "local", "temperature", "grad_norm", "skipped"} <= set(log[0])
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)
    assert [s for s, _ in list_checkpoints(run)] == [12, 24]
    in_training = next(r["eval"]["shapes-retrieval"] for r in log if "eval" in r)

    res = runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", f"sparc:{run}", "--param",
                              f"root={small_world}", "-o", str(tmp_path / "results"), "-q", "--no-cache"])
    assert res.exit_code == 0, res.output
    result = json.loads(next((tmp_path / "results").rglob("shapes-retrieval.json")).read_text())
    assert result["model"]["weights_sha256"] == sha256_file(run / "checkpoint-24" / "model.safetensors")
    assert result["preprocessing"]["resolution"] == 64 and result["preprocessing"]["step"] == 24
    for k, v in in_training.items():  # the evaluator sees exactly the model that was trained
        assert result["metrics"][k] == pytest.approx(v, abs=1e-9), k
    assert result["metrics"]["mean_R@1"] > result["chance"]["mean_R@1"]

    res = runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", f"sparc:{run}", "--pretrained", "12",
                              "--param", f"root={small_world}", "-o", str(tmp_path / "results"), "-q", "--no-cache"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", f"sparc:{run}", "--pretrained", "30",
                              "--param", f"root={small_world}", "-o", str(tmp_path / "results"), "-q"])
    assert res.exit_code == 2 and "no checkpoint of step 30; found steps 12, 24" in res.output


def test_dense_outputs_of_a_checkpoint(small_world, tmp_path):
    from PIL import Image

    from sparc_eval.api import load_model
    from sparc_eval.pretrain.config import load_config
    from sparc_eval.pretrain.train import train

    cfg = load_config(write_config(tmp_path / "c.yaml", small_world, tmp_path / "run", steps=1, precision="bf16"))
    out = train(cfg, progress=False, log=lambda m: None)  # bf16 autocast on the CPU, losses in float32
    assert out["step"] == 1 and 0 < out["loss"] < 10
    model = load_model(f"sparc:{tmp_path / 'run'}", device="cpu")
    assert model.supports("image_patches") and model.supports("text_tokens")
    img = torch.stack([model.image_transform(Image.open(small_world / "images" / "000000.png"))])
    patches = model.encode_image_patches(img)
    assert patches.embeddings.shape == (1, 64, 32) and patches.grid == (8, 8)
    enc = model.model
    with torch.no_grad():  # App. D.7: every patch through h_v then g_v
        feats = enc.image_features(img)
        torch.testing.assert_close(patches.embeddings, enc.g_v(enc.h_v(feats)))
        torch.testing.assert_close(model.encode_images(img),
                                   torch.nn.functional.normalize(enc.g_v(enc.h_v(feats.mean(1))), dim=-1))
    tokens, mask = model.encode_text_tokens(["a red circle", "a blue square above a green star"])
    assert tokens.shape == (2, 16, 32) and mask.sum(1).tolist() == [5, 9]


def test_killed_run_resumes_bit_identically(small_world, tmp_path):
    from sparc_eval.pretrain.config import load_config
    from sparc_eval.pretrain.train import train

    over = {"steps": 16, "checkpoint_every": 2, "accum_steps": 2,
            "loss": {"name": "filip", "params": {"global_weight": 1.0, "token_drop": 0.2}}}
    straight = tmp_path / "straight"
    train(load_config(write_config(tmp_path / "a.yaml", small_world, straight, **over)), progress=False,
          log=lambda m: None)

    killed = tmp_path / "killed"
    cfg_path = write_config(tmp_path / "b.yaml", small_world, killed, **over)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "HF_HUB_OFFLINE": "1"}  # same float sums
    proc = subprocess.Popen([sys.executable, "-m", "sparc_eval.pretrain", "--config", str(cfg_path), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list_checkpoints(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [s for s, _ in list_checkpoints(killed)]
    assert done and done[-1] < 16, (done, proc.stderr.read().decode()[-2000:])

    out = train(load_config(cfg_path), resume=True, progress=False, log=lambda m: None)
    assert out["step"] == 16
    a = load_file(straight / "checkpoint-16" / "model.safetensors")
    b = load_file(killed / "checkpoint-16" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keep = ("step", "loss", "global", "filip", "lr", "grad_norm", "logit_scale")
    assert [{k: r[k] for k in keep} for r in read_log(killed)] == [{k: r[k] for k in keep} for r in read_log(straight)]


def test_stop_after_then_resume_from_a_checkpoint_folder(small_world, tmp_path, runner):
    from sparc_eval.cli.pretrain import pretrain

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", small_world, run, steps=6, checkpoint_every=100)
    assert runner.invoke(pretrain, ["--config", str(cfg), "--stop-after", "3", "-q"]).exit_code == 0
    assert [s for s, _ in list_checkpoints(run)] == [3]
    res = runner.invoke(pretrain, ["--config", str(cfg), "--resume", str(run / "checkpoint-3"), "-q"])
    assert res.exit_code == 0, res.output
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4, 5, 6]
    first_run = load_file(run / "checkpoint-6" / "model.safetensors")
    # resuming from an older checkpoint drops the later ones and their log lines (sparc:RUN must not load them)
    with (run / "log.jsonl").open("a") as f:
        f.write('{"step": 7, "lo')  # a line cut short by a kill: skipped
    res = runner.invoke(pretrain, ["--config", str(cfg), "--resume", str(run / "checkpoint-3"), "--stop-after", "1",
                                   "-q"])
    assert res.exit_code == 0, res.output
    assert [s for s, _ in list_checkpoints(run)] == [3, 4]
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4]
    changed = write_config(tmp_path / "d.yaml", small_world, run, steps=6, batch_size=16)
    res = runner.invoke(pretrain, ["--config", str(changed), "--resume", "-q"])
    assert res.exit_code == 2 and "differs from the checkpoint's in batch_size" in res.output
    # a new run refuses the folder of an old one; --overwrite replaces it
    res = runner.invoke(pretrain, ["--config", str(cfg), "-q"])
    assert res.exit_code == 2 and f"output_dir {run}: the folder is not empty" in res.output, res.output
    res = runner.invoke(pretrain, ["--config", str(cfg), "--overwrite", "-q"])
    assert res.exit_code == 0, res.output
    assert [s for s, _ in list_checkpoints(run)] == [6]
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4, 5, 6]
    again = load_file(run / "checkpoint-6" / "model.safetensors")
    assert all(torch.equal(first_run[k], again[k]) for k in first_run)


def test_resume_errors_are_clear(small_world, tmp_path, runner):
    from sparc_eval.cli.pretrain import pretrain

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", small_world, run, steps=2, checkpoint_every=1)
    res = runner.invoke(pretrain, ["--config", str(cfg), "--resume", str(tmp_path / "nowhere"), "-q"])
    assert res.exit_code == 2 and f"--resume {tmp_path / 'nowhere'}: folder not found" in res.output, res.output
    assert runner.invoke(pretrain, ["--config", str(cfg), "-q"]).exit_code == 0
    state = run / "checkpoint-2" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:300])  # a damaged file
    res = runner.invoke(pretrain, ["--config", str(cfg), "--resume", "-q"])
    assert res.exit_code == 2 and f"{state}: cannot read the training state" in res.output, res.output
    assert "Traceback" not in res.output
    res = runner.invoke(pretrain, ["--config", str(cfg), "--resume", "--overwrite", "-q"])
    assert res.exit_code == 2 and "--resume and --overwrite exclude each other" in res.output


def test_output_and_device_options_are_taken_as_given(small_world, tmp_path, runner, monkeypatch):
    from sparc_eval.cli.pretrain import pretrain

    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "c.yaml", small_world, tmp_path / "elsewhere", steps=1)
    res = runner.invoke(pretrain, ["--config", str(cfg), "-o", "007", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert [s for s, _ in list_checkpoints(tmp_path / "007")] == [1] and not (tmp_path / "elsewhere").exists()
    assert json.loads((tmp_path / "007" / "train_config.json").read_text())["output_dir"] == "007"


@pytest.mark.parametrize("change, message", [
    ({"loss": {"name": "sprac"}}, "Unknown loss 'sprac'. Did you mean: sparc"),
    ({"loss": {"name": "sparc", "params": {"lokal_weight": 1}}}, "unknown option(s) lokal_weight for loss 'sparc'"),
    ({"data": {"format": "csv", "path": "/nonexistent/train.csv"}}, "data.path: training CSV /nonexistent/train.csv not found"),
    ({"data": {"format": "csv"}}, "format csv needs data.path"),
    ({"data": {"format": "webdataset", "shards": "BAD"}}, "is not a tar archive (bad shard)"),
    ({"data": {"format": "webdataset", "shards": "/nonexistent/s-{0..3}.tar"}}, "4 of 4 shard(s) not found"),
    ({"data": {"format": "shapes", "root": "/nonexistent"}}, "is not a shapes world (no world.json)"),
    ({"batch_size": 6, "accum_steps": 4}, "batch_size 6: must be divisible by the number of processes (1) times "
                                          "accum_steps (4)"),
    ({"eval": {"every": 100, "tasks": ["shapes-retrival"]}}, "Unknown task 'shapes-retrival'"),
    ({"eval": {"every": 100, "limit": 0}}, "eval.limit: 0; expected a number >= 1"),
    ({"eval": {"every": 100, "params": {"no_such_param": 1}}}, "--param no_such_param: task 'shapes-retrieval' has no"),
    ({"precision": "fp16"}, "precision fp16 needs a CUDA device"),
    ({"stepz": 3}, "unknown key(s) ['stepz']"),
    ({"model": {"arch": "ViT-Tiny-8-46"}}, "Unknown open_clip architecture 'ViT-Tiny-8-46'"),
])
def test_config_errors_are_clear(small_world, tmp_path, runner, change, message):
    from sparc_eval.cli.pretrain import pretrain

    if change.get("data", {}).get("shards") == "BAD":
        (tmp_path / "bad.tar").write_bytes(b"this is not a tar archive" * 40)
        change = {"data": {"format": "webdataset", "shards": str(tmp_path / "bad.tar")}}
    cfg = write_config(tmp_path / "c.yaml", small_world, tmp_path / "run", **change)
    res = runner.invoke(pretrain, ["--config", str(cfg), "-q"])
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not list_checkpoints(tmp_path / "run")  # refused before the first step


def test_recipes_validate_and_compare_like_for_like(small_world, monkeypatch):
    from sparc_eval.pretrain.config import load_config

    monkeypatch.setenv("SPARC_EVAL_DATA", "/data")
    folder = Path(__file__).resolve().parent.parent / "configs"
    cfgs = {p.stem: load_config(p, {"data.root": str(small_world)} if p.stem.startswith("shapes") else {})
            for p in sorted(folder.glob("*.yaml"))}
    for sparc, clip in (("shapes-sparc", "shapes-clip"), ("sparc-vit-b16", "clip-vit-b16")):
        a, b = cfgs[sparc].as_dict(), cfgs[clip].as_dict()
        assert {k for k in a if a[k] != b[k]} == {"name", "output_dir", "loss"}
        assert (cfgs[sparc].loss["name"], cfgs[clip].loss["name"]) == ("sparc", "clip")
    shapes = cfgs["shapes-sparc"]
    assert shapes.model.arch == "ViT-Tiny-8-64" and shapes.device == "cpu" and shapes.steps * shapes.batch_size >= 20000
    b16 = cfgs["sparc-vit-b16"]
    assert (b16.batch_size, b16.steps, b16.optim["warmup_steps"], b16.model.embed_dim) == (16384, 200000, 2500, 512)
    assert b16.data["shards"].startswith("/data/")


def test_model_losses_checkpoint_and_loader_import_without_the_training_loop():
    code = ("import json, sys, sparc_eval.pretrain.model, sparc_eval.pretrain.losses, sparc_eval.pretrain.checkpoint, "
            "sparc_eval.models.sparc_adapter; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sparc_eval.pretrain.') or m == 'sparc_eval.api')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["sparc_eval.pretrain.checkpoint", "sparc_eval.pretrain.losses", "sparc_eval.pretrain.model"]
