"""Training configs: one YAML per recipe (``configs/*.yaml``), validated strictly (the loss name and its
options by ``losses.build_loss``, when the trainer builds the loss).

    name: shapes-sparc                # run name
    seed: 0
    output_dir: runs/shapes-sparc     # checkpoints, log.jsonl (relative: to the current folder)
    steps: 1000                       # optimizer steps
    batch_size: 256                   # global batch per optimizer step (all processes, all micro-batches)
    accum_steps: 1                    # micro-batches per step and process (exact: see train.py)
    precision: fp32                   # fp32 | bf16 | fp16 (fp16 on CUDA only; bf16 autocast on CPU or CUDA)
    device: auto                      # auto | cpu | cuda (under torchrun: the local rank's GPU)
    threads: null                     # CPU threads for torch (null: torch's default)
    log_every: 10
    checkpoint_every: 500
    keep_checkpoints: null            # keep only the N newest (null: all)
    model: {arch: ViT-B-16, ...}      # pretrain.model.ModelConfig
    loss: {name: sparc, params: {global_weight: 0.5, local_weight: 1.0}}
    data: {format: csv | shapes | webdataset, ...}          # see DATA
    optim: {lr: 5.0e-4, weight_decay: 0.2, betas: [0.9, 0.98], eps: 1.0e-6, warmup_steps: 100, grad_clip: 1.0}
    eval: {every: 0, tasks: [shapes-retrieval], params: {}, limit: null, batch_size: 256}

Strings may use ``${shapes}`` (the standard shapes world, generated on first use), ``${data_root}``
(``SPARC_EVAL_DATA``) and ``${config_dir}`` (the YAML's folder). ``overrides`` (``--set key=value``, dotted
keys such as ``optim.lr=1e-3``) apply before validation.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.synthetic import default_world, training_world
from ..errors import ConfigError
from ..params import Param, parse_assignment, validate
from ..yamlio import read_yaml, substitute
from .losses import LOSSES
from .model import ModelConfig

PRECISIONS = ("fp32", "bf16", "fp16")

TOP = {
    "name": Param("str", None, "run name"),
    "seed": Param("int", 0),
    "output_dir": Param("path", None, "run folder (default runs/<name>)"),
    "steps": Param("int", help="optimizer steps"),
    "batch_size": Param("int", help="global batch per optimizer step"),
    "accum_steps": Param("int", 1),
    "precision": Param("str", "fp32", choices=PRECISIONS),
    "device": Param("str", "auto"),
    "threads": Param("int", None, "CPU threads for torch (null: torch's default)"),
    "log_every": Param("int", 10),
    "checkpoint_every": Param("int", 1000),
    "keep_checkpoints": Param("int", None),
    "model": Param("dict", help="model section"),
    "loss": Param("dict", help="loss section"),
    "data": Param("dict", help="data section"),
    "optim": Param("dict", {}),
    "eval": Param("dict", {}),
}
LOSS = {"name": Param("str", help=f"one of {', '.join(LOSSES.names())}"), "params": Param("dict", {})}
DATA = {
    "format": Param("str", choices=("csv", "shapes", "webdataset")),
    "path": Param("path", None, "csv: the CSV file"),
    "image_root": Param("path", None, "csv: folder relative image paths start from (default: the CSV's)"),
    "path_column": Param("str", "path"),
    "caption_column": Param("str", "caption"),
    "captions": Param("str", "per_image", choices=("per_image", "per_row")),
    "root": Param("path", None, "shapes: the world folder"),
    "splits": Param("list[str]", ["train", "restval"]),
    "shards": Param("any", None, "webdataset: a brace pattern or a list of .tar files"),
    "image_keys": Param("list[str]", ["jpg", "jpeg", "png", "webp"]),
    "caption_keys": Param("list[str]", ["txt"]),
    "num_workers": Param("int", 2),
}
DATA_REQUIRED = {"csv": "path", "shapes": "root", "webdataset": "shards"}
OPTIM = {
    "lr": Param("float", 5e-4),
    "weight_decay": Param("float", 0.2),
    "betas": Param("list[float]", [0.9, 0.98]),
    "eps": Param("float", 1e-6),
    "warmup_steps": Param("int", 0),
    "grad_clip": Param("float", None, "max global gradient norm (null: no clipping)"),
}
EVAL = {
    "every": Param("int", 0, "evaluate every N steps and at the end (0: never)"),
    "tasks": Param("list[str]", ["shapes-retrieval"]),
    "params": Param("dict", {}, "task --param overrides, e.g. {root: /path/to/world}"),
    "limit": Param("int", None),
    "batch_size": Param("int", 256),
}
MODEL = {
    "arch": Param("str", help="an open_clip model config name"),
    "embed_dim": Param("int", None),
    "h_v": Param("bool", True),
    "vision_cfg": Param("dict", {}),
    "text_cfg": Param("dict", {}),
    "quick_gelu": Param("bool", False),
    "init_temperature": Param("float", 0.07),
    "max_logit_scale": Param("float", 100.0),
    "local_temperature": Param("str", "shared", choices=("shared", "separate")),
}


@dataclass
class TrainConfig:
    name: str
    seed: int
    output_dir: Path
    steps: int
    batch_size: int
    accum_steps: int
    precision: str
    device: str
    threads: int | None
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int | None
    model: ModelConfig
    loss: dict
    data: dict
    optim: dict
    eval: dict

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["output_dir"] = str(self.output_dir)
        out["model"] = self.model.as_dict()
        return out


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise ConfigError(f"--set {key}: {p!r} is not a section")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _positive(section: str, values: Mapping[str, Any], keys: Iterable[str], minimum: int = 1) -> None:
    for k in keys:
        v = values[k]
        if v is not None and v < minimum:
            raise ConfigError(f"{section}{k}: {v}; expected a number >= {minimum}")


def from_dict(raw: Mapping[str, Any], where: str = "config", config_dir: Path | None = None) -> TrainConfig:
    """Validate a raw config mapping (variables substituted) into a ``TrainConfig``."""
    env_root = os.environ.get("SPARC_EVAL_DATA")
    variables = {"shapes": default_world, "shapes_train": training_world,
                 "data_root": Path(env_root).expanduser() if env_root else None, "config_dir": config_dir or Path.cwd()}
    top = validate(substitute(dict(raw), variables, where), TOP, where)
    _positive("", top, ("steps", "batch_size", "accum_steps", "threads", "log_every", "checkpoint_every",
                        "keep_checkpoints"))
    if top["precision"] == "fp16" and top["device"] == "cpu":
        raise ConfigError(f"{where}: precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    loss = validate(top["loss"], LOSS, f"{where}.loss")  # name and options: checked by losses.build_loss
    data = validate(top["data"], DATA, f"{where}.data")
    need = DATA_REQUIRED[data["format"]]
    if data[need] is None:
        raise ConfigError(f"{where}.data: format {data['format']} needs data.{need}")
    _positive(f"{where}.data.", data, ("num_workers",), minimum=0)
    optim = validate(top["optim"], OPTIM, f"{where}.optim")
    if len(optim["betas"]) != 2:
        raise ConfigError(f"{where}.optim.betas: {optim['betas']}; expected two numbers such as [0.9, 0.98]")
    _positive(f"{where}.optim.", optim, ("warmup_steps",), minimum=0)
    ev = validate(top["eval"], EVAL, f"{where}.eval")
    _positive(f"{where}.eval.", ev, ("every",), minimum=0)
    _positive(f"{where}.eval.", ev, ("limit", "batch_size"))
    model = ModelConfig.from_dict(validate(top["model"], MODEL, f"{where}.model"), where=f"{where}.model")
    name = top["name"] or "run"
    out_dir = Path(top["output_dir"] or Path("runs") / name).expanduser()
    plain = ("seed", "steps", "batch_size", "accum_steps", "precision", "device", "threads", "log_every",
             "checkpoint_every", "keep_checkpoints")
    return TrainConfig(name=name, output_dir=out_dir, model=model, loss=loss, data=data, optim=optim, eval=ev,
                       **{k: top[k] for k in plain})


def load_config(path: Path | str, overrides: Iterable[str] | Mapping[str, Any] = ()) -> TrainConfig:
    """Read, override (``key=value`` strings or a mapping of dotted keys) and validate a training YAML."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, found {type(raw).__name__}")
    pairs = overrides.items() if isinstance(overrides, Mapping) else (parse_assignment(o, "--set") for o in overrides)
    for key, value in pairs:
        _set_dotted(raw, key, value)
    return from_dict(raw, where=str(path), config_dir=path.resolve().parent)
