"""``sparc-eval pretrain --seed N``: the seed overrides the recipe's and, without -o, gets its own run folder."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_seed_option_sets_the_seed_and_its_own_run_folder(small_world, tmp_path, runner, cli, one_thread,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--config", str(REPO / "configs" / "shapes-clip.yaml"), "-q", "--seed", "3",
            "--set", "steps=1", "--set", "batch_size=4", "--set", "eval.every=0",
            "--set", "checkpoint_every=1", "--set", f"data.root={small_world}", "--set", "data.num_workers=0"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "runs" / "shapes-clip-seed3" / "train_config.json").read_text())  # recipe's + suffix
    assert cfg["seed"] == 3
    r = runner.invoke(cli, args + ["-o", str(tmp_path / "mine")])  # a folder given (-o, --set output_dir=) is kept
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "mine" / "train_config.json").read_text())["seed"] == 3
