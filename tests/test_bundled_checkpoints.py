"""The bundled shapes-world checkpoints: weights match their model cards, and the cards' demo results
reproduce (CPU, one thread, seed 0; within one sample, 100/N points, since CPU kernels differ between
machines; the evaluation is the session's ``demo_results``, shared with the README's demo-block check).
Every card names its seed group (``method``) and the checkpoints form the SPARC and CLIP groups. The
training recipe runs and writes a checkpoint the evaluator loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparc_eval.api import evaluate
from sparc_eval.fileio import sha256_file

REPO = Path(__file__).resolve().parent.parent
BUNDLED = sorted(p for p in (REPO / "checkpoints").iterdir() if (p / "card.json").is_file())


def test_there_are_bundled_sparc_and_clip_seed_groups():
    methods = {}
    for p in BUNDLED:
        card = json.loads((p / "card.json").read_text())
        methods.setdefault(card.get("method", p.name), []).append(p.name)
    assert set(methods) >= {"shapes-sparc", "shapes-clip"}
    assert len({len(v) for v in methods.values()}) == 1, f"every method needs the same number of seeds: {methods}"


@pytest.mark.parametrize("folder", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_checkpoint_matches_its_card(folder, demo_results):
    card = json.loads((folder / "card.json").read_text())
    assert sha256_file(folder / "model.safetensors", memo=False) == card["sha256"]
    assert card["sha256"] in (folder / "README.md").read_text()
    results = demo_results[1][folder.name]
    assert set(results) == set(card["results"]), "re-run `python tools/checkpoints.py cards`"
    for task, got in results.items():
        want = card["results"][task]
        tolerance = 100 / got["n"]
        assert got["n"] == want["n"]
        for key, value in want["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, abs=tolerance), (task, key)
    stored = json.loads((demo_results[0] / folder.name / "shapes-retrieval.json").read_text())
    assert stored["role"] == "model" and stored["seed_group"] == card.get("method", folder.name)


def test_training_recipe_runs_and_writes_a_loadable_checkpoint(small_world, tmp_path, runner, cli, one_thread):
    out = tmp_path / "run"
    r = runner.invoke(cli, ["pretrain", "--config", str(REPO / "configs" / "shapes-sparc.yaml"), "-o", str(out), "-q",
                            "--set", "steps=3", "--set", "batch_size=8", "--set", "eval.every=0",
                            "--set", "checkpoint_every=3", "--set", f"data.root={small_world}",
                            "--set", "data.num_workers=0"])
    assert r.exit_code == 0, r.output
    ev = evaluate(f"sparc:{out}", ["shapes-retrieval"], params=[f"root={small_world}"], write=False, progress=False,
                  log=lambda m: None)[0]
    assert ev.result["model"]["weights_sha256"] == sha256_file(out / "checkpoint-3" / "model.safetensors")
    assert 0 <= ev.metrics["mean_R@1"] <= 100
