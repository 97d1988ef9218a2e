"""Training checkpoints: ``RUN_DIR/checkpoint-STEP/{model.safetensors, training_state.pt, config.json}``.

- ``model.safetensors``: the ``DualEncoder`` weights (what the ``sparc:`` loader reads).
- ``training_state.pt``: optimizer, scheduler, grad-scaler, loss-module and RNG state, step and data position;
  plain tensors and containers only, loadable with ``torch.load(weights_only=True)``.
- ``config.json``: ``{"format": "sparc-eval-pretrain", "version", "step", "model": ModelConfig,
  "preprocessing": {...}, "loss": name, "train_config": {...}}``.

Every file is written atomically (temp file, flushed to disk with fsync, then renamed) and ``config.json``
last, so a folder without it is an interrupted save: ``list_checkpoints`` ignores it and the next save of
that step overwrites it.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..fileio import atomic_path, atomic_write_json
from .model import DualEncoder, ModelConfig

FORMAT = "sparc-eval-pretrain"
VERSION = 1
PREFIX = "checkpoint-"
MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "config.json"


def checkpoint_dir(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / f"{PREFIX}{step}"


def is_checkpoint(path: Path | str) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file()


def list_checkpoints(run_dir: Path | str) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, by step."""
    found = []
    for p in Path(run_dir).glob(f"{PREFIX}*"):
        tail = p.name[len(PREFIX):]
        if tail.isdigit() and is_checkpoint(p):
            found.append((int(tail), p))
    return sorted(found)


def _fsync(path: Path) -> None:
    """Flush a file written by a library (safetensors, torch.save) to disk before it is renamed into place."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_checkpoint(run_dir: Path | str, step: int, model: DualEncoder, *, preprocessing: dict, loss: str,
                    train_config: dict | None = None, training_state: dict | None = None) -> Path:
    """Write ``checkpoint-STEP`` (atomically, ``config.json`` last) and return its folder."""
    from safetensors.torch import save_file

    out = checkpoint_dir(run_dir, step)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / MODEL_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "step": str(step)})
        _fsync(tmp)
    if training_state is not None:
        with atomic_path(out / STATE_FILE) as tmp:
            torch.save(training_state, tmp)
            _fsync(tmp)
    atomic_write_json(out / CONFIG_FILE, {"format": FORMAT, "version": VERSION, "step": step,
                                          "model": model.config.as_dict(), "preprocessing": preprocessing,
                                          "loss": loss, "train_config": train_config or {}})
    return out


def prune_checkpoints(run_dir: Path | str, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints."""
    for _, p in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


def remove_checkpoints_after(run_dir: Path | str, step: int) -> None:
    """Delete the ``checkpoint-N`` folders of a run with N > ``step``, complete or not (a stale future)."""
    for p in Path(run_dir).glob(f"{PREFIX}*"):
        tail = p.name[len(PREFIX):]
        if tail.isdigit() and int(tail) > step and p.is_dir():
            shutil.rmtree(p)


def resolve_checkpoint(path: Path | str, step: str | int | None = None, label: str = "sparc:") -> Path:
    """A checkpoint folder from a checkpoint folder or a run folder; in a run folder ``step`` (``1000`` or
    ``checkpoint-1000``) picks one, default the latest. ``label`` names the path in errors (``sparc:`` for a
    model spec, ``--resume`` for a training run)."""
    path = Path(path).expanduser()
    what = f"{label}{path}" if label.endswith(":") else f"{label} {path}"
    if not path.is_dir():
        raise ModelLoadError(f"{what}: folder not found")
    if is_checkpoint(path):
        if step is not None and str(step).removeprefix(PREFIX) != str(read_config(path)["step"]):
            raise ModelLoadError(f"{what} is the checkpoint of step {read_config(path)['step']}, "
                                 f"not {step}; pass the run folder to choose a step")
        return path
    found = list_checkpoints(path)
    if not found:
        raise ModelLoadError(f"{what}: no checkpoint here (expected {CONFIG_FILE} + {MODEL_FILE}, or "
                             f"{PREFIX}STEP folders holding them)")
    if step is None:
        return found[-1][1]
    wanted = str(step).removeprefix(PREFIX)
    for s, p in found:
        if str(s) == wanted:
            return p
    raise ModelLoadError(f"{what}: no checkpoint of step {step}; found steps {', '.join(str(s) for s, _ in found)}")


def read_config(path: Path | str) -> dict:
    """``config.json`` of a checkpoint folder, checked to be ours."""
    f = Path(path) / CONFIG_FILE
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{f}: cannot read the checkpoint config ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "model" not in cfg:
        raise ModelLoadError(f"{f}: not a sparc-eval pretraining checkpoint (expected \"format\": \"{FORMAT}\")")
    if cfg.get("version", 0) > VERSION:
        raise ModelLoadError(f"{f}: checkpoint format version {cfg['version']} is newer than this sparc-eval "
                             f"understands ({VERSION}); upgrade sparc-eval")
    return cfg


def load_model(path: Path | str) -> tuple[DualEncoder, dict]:
    """(model on CPU in eval mode, config.json) of a checkpoint folder."""
    from ..checkpoint_io import load_into, load_state_dict

    path = Path(path)
    cfg = read_config(path)
    model = DualEncoder(ModelConfig.from_dict(cfg["model"], where=f"{path / CONFIG_FILE}: model"))
    load_into(model, load_state_dict(path / MODEL_FILE), path / MODEL_FILE, f"the {cfg['model'].get('arch')} "
              f"dual encoder of {path / CONFIG_FILE}")
    return model.eval(), cfg


def load_training_state(path: Path | str) -> dict:
    """``training_state.pt`` of a checkpoint folder (tensors and plain containers only)."""
    f = Path(path) / STATE_FILE
    if not f.is_file():
        raise ModelLoadError(f"{f}: no training state in this checkpoint; it cannot be resumed")
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as e:
        raise ModelLoadError(f"{f}: cannot read the training state ({type(e).__name__}: {str(e)[:200]}); the file "
                             f"is damaged or not ours: resume from another checkpoint") from None
    if not isinstance(state, dict) or not {"step", "optimizer", "config"} <= set(state):
        raise ModelLoadError(f"{f}: not a sparc-eval training state (expected a mapping with step, optimizer, "
                             f"config, ...)")
    return state
