"""Safe loading of weight files: safetensors, or ``torch.load(weights_only=True)``; never plain pickle.

A checkpoint from a stranger can run code when unpickled. We only read tensors: ``.safetensors``
with safetensors, ``.pt/.pth/.bin/.ckpt`` with torch's restricted unpickler, which refuses anything
but tensors and plain containers. Training checkpoints are unwrapped (``state_dict`` / ``model`` /
``module`` keys, ``module.`` prefixes from DDP).
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from .errors import ModelLoadError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped and with ``module.`` prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{path}: not a readable safetensors file ({e}); "
                                 f"it may be truncated or corrupt") from None
    elif path.suffix in WEIGHT_SUFFIXES:
        state = _torch_load(path)
    else:
        raise ModelLoadError(f"{path}: unknown weights format {path.suffix!r}; expected one of "
                             f"{', '.join(WEIGHT_SUFFIXES)}")
    return unwrap_state_dict(state, path)


def _torch_load(path: Path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") for n in z.namelist()):
                raise ModelLoadError(f"{path}: this is a TorchScript archive (e.g. an original OpenAI CLIP .pt); "
                                     f"load it with the open_clip pretrained tag from the Hugging Face cache, or "
                                     f"convert it once to safetensors")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelLoadError(
            f"{path}: refused to load: the file contains Python objects other than tensors, and unpickling "
            f"them could execute code ({first}). Re-save the weights as a plain state_dict or as safetensors."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__ + (": the file is empty" if path.stat().st_size == 0
                                                                   else ": it ends early")])[0]
        raise ModelLoadError(f"{path}: cannot read the checkpoint ({why}); "
                             f"it may be truncated or not a PyTorch file") from None


def unwrap_state_dict(state, path: Path | str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a training checkpoint and strip DDP ``module.`` prefixes."""
    for _ in range(3):
        if isinstance(state, Mapping) and not _all_tensors(state):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if inner is None:
                break
            state = inner
    if not isinstance(state, Mapping) or not state:
        raise ModelLoadError(f"{path}: no state_dict found (expected a mapping of parameter names to tensors)")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path}: no tensors found; top-level keys are {sorted(map(str, state))[:10]}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    check_finite_tensors(tensors, path)
    return tensors


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """``ModelLoadError`` naming the file and the first tensor holding NaN (or +-inf outside a ``*mask*``
    buffer): such weights make every embedding NaN, and NaN scores rank as perfect recall."""
    for key, t in tensors.items():
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        bad = torch.isnan(t) if "mask" in key else ~torch.isfinite(t)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ModelLoadError(f"{path}: tensor {key!r} holds {n} non-finite value(s) (NaN or inf) of {t.numel()}; "
                                 f"expected finite weights (a diverged or damaged checkpoint)")


def _all_tensors(d: Mapping) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path | str, what: str) -> None:
    """Strictly load ``state`` into ``module``; a mismatch lists the missing/unexpected/misshaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if misshaped:
            parts.append("shape mismatches: " + show(
                [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in misshaped]))
        raise ModelLoadError(f"{path}: weights do not fit {what}: " + "; ".join(parts)
                             + ". Is this checkpoint for a different architecture?")
    module.load_state_dict(state, strict=True)


def folder_weights_sha256(folder: Path | str) -> str:
    """Identity of the weights saved in a model folder (``*.safetensors`` / ``*.bin``): the sha256 of
    the single file, or a hash of every file's name and sha256 (sharded weights)."""
    from .fileio import sha256_file, sha256_json

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise ModelLoadError(f"{folder}: no model weights (*.safetensors or *.bin) in the folder")
    if len(files) == 1:
        return sha256_file(files[0])
    return sha256_json({f.name: sha256_file(f) for f in files})
