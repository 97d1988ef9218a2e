"""Build the bundled shapes-world checkpoints and their model cards.

    python tools/checkpoints.py build                  # every recipe in RECIPES x every seed in SEEDS, then the cards
    python tools/checkpoints.py build sparc --seeds 0  # one method, one seed
    python tools/checkpoints.py build --device cuda --workers 3 --no-cards   # on a GPU; cards later on the CPU
    python tools/checkpoints.py cards                  # re-evaluate the bundled checkpoints on the demo suite, rewrite cards
    python tools/readme_blocks.py --demo               # then: the README's demo block from results/cards

``build`` trains ``configs/shapes-<method>.yaml`` (same data, steps and model for every method; only the
loss differs) once per training seed into ``runs/shapes-<method>-seed<N>`` (replacing an earlier build's
run there), stores the final weights in float16 (half the size; the loader casts them back to float32)
with ``config.json`` in ``checkpoints/shapes-<method>-seed<N>/`` and writes the card. Checkpoints of one
recipe that differ only in the seed form a seed group: the card's ``method`` (``shapes-<method>``).
``cards`` evaluates every bundled checkpoint on
``tasks/suites/demo.yaml`` on the CPU with one thread and seed 0 (the conditions the reproduction test
uses) and rewrites ``card.json`` (read by the test) and the results table of ``README.md`` in each
checkpoint folder; run it whenever a task type joins the demo suite. It writes those results, with the
``untrained`` control (the architecture of ``CONTROL_ARCHITECTURE`` with random weights, role
``control``) evaluated the same way, to ``results/cards/``: the input of the README's demo block
(``python tools/readme_blocks.py --demo``). ``demo_results(folder)`` is that evaluation; the tests call it
once per session for the card check and the README block check.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "checkpoints"
RECIPES = ("clip", "sparc")
SEEDS = (0, 1)  # training seeds per method (each seed: its own initialisation and data order); see the README
CARD_RESULTS = REPO / "results" / "cards"
CONTROL_ARCHITECTURE = "shapes-sparc-seed0"  # the bundled checkpoint whose architecture the untrained control has
CONTROL_SPEC = "py:sparc_eval.models.controls:untrained"
CARD_BEGIN, CARD_END = "<!-- results:begin -->", "<!-- results:end -->"


def _bundle(method: str, seed: int, run_dir: Path, recipe: Path, wall_s: float, trained_on: str) -> Path:
    from safetensors.torch import load_file, save_file

    from sparc_eval.fileio import atomic_write_json, sha256_file
    from sparc_eval.pretrain.checkpoint import list_checkpoints
    from sparc_eval.yamlio import read_yaml

    step, src = list_checkpoints(run_dir)[-1]
    dest = CHECKPOINTS / f"shapes-{method}-seed{seed}"
    dest.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(weights, str(dest / "model.safetensors"), metadata={"dtype": "float16", "step": str(step)})
    config = json.loads((src / "config.json").read_text())
    config["train_config"] = {**read_yaml(recipe), "seed": seed}  # the recipe as written (no machine paths)
    atomic_write_json(dest / "config.json", config)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [e for e in log if "loss" in e]
    atomic_write_json(dest / "card.json", {
        "name": dest.name, "method": f"shapes-{method}", "recipe": str(recipe.relative_to(REPO)),
        "loss": config["loss"], "step": step, "seed": seed, "sha256": sha256_file(dest / "model.safetensors", memo=False),
        "train_wall_s": round(wall_s, 1), "trained_on": trained_on, "first_loss": losses[0]["loss"] if losses else None,
        "final_loss": losses[-1]["loss"] if losses else None, "results": {}})
    return dest


def _machine(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def build(methods: list[str], seeds: list[int], device: str | None = None, workers: int | None = None,
          with_cards: bool = True) -> None:
    """Train and bundle every (method, seed); ``device``/``workers`` override the recipe's (recorded in
    the card as ``trained_on``; the numbers a recipe gives do not depend on the data workers)."""
    import torch

    from sparc_eval.pretrain.config import load_config
    from sparc_eval.pretrain.train import train

    overrides = {**({"device": device} if device else {}), **({"data.num_workers": workers} if workers else {})}
    for method in methods:
        recipe = REPO / "configs" / f"shapes-{method}.yaml"
        for seed in seeds:
            cfg = load_config(recipe, {"output_dir": str(REPO / "runs" / f"shapes-{method}-seed{seed}"), "seed": seed,
                                       **overrides})
            print(f"training {recipe.name} seed {seed} ({cfg.steps} steps, batch {cfg.batch_size}, "
                  f"{torch.get_num_threads()} threads)")
            t0 = time.perf_counter()
            train(cfg, progress=sys.stderr.isatty(), overwrite=True)  # a new run replaces the last build's
            wall = time.perf_counter() - t0
            print(f"  done in {wall / 60:.1f} min")
            _bundle(method, seed, cfg.output_dir, recipe, wall, _machine(cfg.device))
    if with_cards:
        cards()


def bundled() -> list[Path]:
    """The bundled checkpoint folders (those with a ``card.json``), by name."""
    return sorted(p for p in CHECKPOINTS.iterdir() if (p / "card.json").is_file())


def control_architecture(folders: list[Path] | None = None) -> Path:
    """The checkpoint whose architecture the untrained control rebuilds: ``CONTROL_ARCHITECTURE`` when bundled,
    else the first bundled checkpoint (every recipe has the same model; only the loss differs)."""
    folders = folders if folders is not None else bundled()
    return next((p for p in folders if p.name == CONTROL_ARCHITECTURE), folders[0])


def _card_conditions(spec: str, output: Path | None, **kw) -> list:
    """``api.evaluate`` of the demo suite on the CPU with one thread and seed 0 (the card conditions)."""
    import torch

    from sparc_eval.api import evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return evaluate(spec, suite="demo", device="cpu", seed=0, output=output or REPO / "results" / "cards",
                        write=output is not None, progress=False, log=lambda m: None, overwrite=True, **kw)
    finally:
        torch.set_num_threads(threads)


def evaluate_bundled(path: Path, output: Path | None = None) -> dict[str, dict]:
    """Demo-suite metrics of one bundled checkpoint under the card's conditions (CPU, 1 thread, seed 0),
    written to ``output`` when given (role ``model``, seed group the card's ``method``)."""
    card = json.loads((path / "card.json").read_text())
    evals = _card_conditions(f"sparc:{path}", output, model_name=path.name, seed_group=card.get("method", path.name))
    return {e.task: {"metrics": e.metrics, "main_metric": e.main_metric, "n": e.result["dataset"]["n_used"],
                     "interval": e.result.get("intervals", {}).get(e.main_metric)} for e in evals}


def demo_results(output: Path, folders: list[Path] | None = None) -> dict[str, dict[str, dict]]:
    """Every bundled checkpoint and the untrained control on the demo suite under the card conditions, written
    to ``output/<name>/``; returns each checkpoint's ``evaluate_bundled`` results by folder name."""
    folders = folders if folders is not None else bundled()
    results = {}
    for folder in folders:
        print(f"evaluating {folder.name} on the demo suite")
        results[folder.name] = evaluate_bundled(folder, output)
    print("evaluating the untrained control on the demo suite")
    _card_conditions(CONTROL_SPEC, output, pretrained=str(control_architecture(folders)), model_name="untrained",
                     role="control")
    return results


def _table(results: dict[str, dict]) -> str:
    rows = ["| task | main metric | value | 95% CI | all metrics |", "|---|---|---|---|---|"]
    for task, r in results.items():
        m = r["main_metric"]
        ci = f"[{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]" if r.get("interval") else "-"
        others = ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items() if k != m)
        rows.append(f"| {task} | {m} | {r['metrics'][m]:.2f} | {ci} | {others} |")
    return "\n".join(rows)


def _card_text(card: dict, table: str) -> str:
    return f"""# {card['name']}

A tiny dual encoder (open_clip `ViT-Tiny-8-64` towers: 64 px images, patch 8, 2 layers of width 128;
text context 32; 64-d joint space), pretrained from scratch on the synthetic shapes world with the
**{card['loss']}** objective. It is a demonstration model: it knows six shapes in eight colours on a
grey background and nothing else. It is training seed {card['seed']} of the seed group `{card['method']}`
(the same recipe trained with seeds {', '.join(str(s) for s in SEEDS)}).

- recipe: `sparc-eval pretrain --config {card['recipe']} --seed {card['seed']}` (step {card['step']})
- training: {card['train_wall_s'] / 60:.1f} min on {card.get('trained_on', '2 CPU cores')};
  loss {card['first_loss']:.3f} -> {card['final_loss']:.3f}
- data: `${{shapes_train}}`, the shapes-world pretraining set generated on demand (20,000 images, seed 1;
  disjoint from the evaluation world, seed 0)
- weights: `model.safetensors` (float16), sha256 `{card['sha256']}`
- load: `sparc-eval run --suite demo --model sparc:checkpoints/{card['name']}`
- reproduce: `python tools/checkpoints.py build {card['method'].split('-', 1)[1]} --seeds {card['seed']}` (same
  numbers up to CPU kernel differences between machines)

## Results on the demo suite (CPU, 1 thread, seed 0)

{CARD_BEGIN}
{table}
{CARD_END}

Regenerate this table with `python tools/checkpoints.py cards`.
"""


def cards() -> None:
    from sparc_eval.fileio import atomic_write_json, atomic_write_text

    results = demo_results(CARD_RESULTS)
    for folder in bundled():
        card = json.loads((folder / "card.json").read_text())
        card.setdefault("method", card["name"])  # cards written before seed groups: a group of one
        card["results"] = results[folder.name]
        atomic_write_json(folder / "card.json", card)
        atomic_write_text(folder / "README.md", _card_text(card, _table(card["results"])))
    print(f"wrote the cards and {CARD_RESULTS.relative_to(REPO)}/; now: python tools/readme_blocks.py --demo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("methods", nargs="*", default=list(RECIPES))
    b.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="training seeds (default: %(default)s)")
    b.add_argument("--device", help="train on this device instead of the recipe's (e.g. cuda)")
    b.add_argument("--workers", type=int, help="data-loading workers instead of the recipe's")
    b.add_argument("--no-cards", action="store_true", help="do not evaluate the checkpoints afterwards")
    sub.add_parser("cards")
    args = ap.parse_args()
    if args.command == "build":
        build(args.methods, args.seeds, args.device, args.workers, not args.no_cards)
    else:
        cards()


if __name__ == "__main__":
    main()
