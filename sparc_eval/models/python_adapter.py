"""``py:module:function`` (or ``py:path/to/file.py:function``): any model built by a Python callable.

The callable receives the keyword arguments it declares among ``pretrained``, ``device``,
``precision``, ``seed`` and ``preprocessing``, and returns either a ``ModelAdapter`` or a tuple
``(module, image_transform, tokenizer)`` of an open_clip-style ``nn.Module`` (``encode_image``,
``encode_text``) with its transform and tokenizer (the module is moved to ``--device``). An adapter
runs on ``--device`` when the callable takes ``device``, else on the device it was built for. Its
identity hashes the callable's qualified name, the sha256 of the file that defines it (editing the
model's code invalidates cached embeddings and results), the seed and ``--pretrained`` (the file's
sha256 when it is a file).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..fileio import sha256_file, sha256_json
from .base import ModelAdapter, ModelIdentity, spec_fingerprint
from .text_batching import encode_cut, open_clip_text_tower, tower_decisions


class ModuleAdapter(ModelAdapter):
    """Wraps an ``nn.Module`` with ``encode_image``/``encode_text`` plus its transform and tokenizer. A stock
    open_clip ``CLIP``/``CustomTextCLIP`` (its ``encode_text`` not overridden) runs texts at the batch's
    longest length where that is exact, as the ``open_clip:`` adapter does (recorded in preprocessing)."""

    def __init__(self, module: torch.nn.Module, tokenizer, **kw):
        super().__init__(**kw)
        self.module, self.tokenizer = module, tokenizer
        self.text_tower = open_clip_text_tower(module) if _stock_open_clip(module) else None
        self.trim = None
        if self.text_tower is not None:
            self.preprocessing = dict(self.preprocessing)
            self.trim, _ = tower_decisions(self.preprocessing, self.text_tower, "token")

    def _encode_images(self, images):
        return self.module.encode_image(images)

    def _encode_texts(self, texts):
        tokens = self.tokenizer(list(texts))
        tokens = tokens.to(self.device) if hasattr(tokens, "to") else tokens
        if self.trim is not None and self.trim.trim and isinstance(tokens, torch.Tensor) and tokens.dim() == 2:
            return encode_cut(self.text_tower, tokens)
        return self.module.encode_text(tokens)


def _stock_open_clip(module) -> bool:
    """Whether ``module`` encodes texts with open_clip's own ``CLIP``/``CustomTextCLIP.encode_text``."""
    try:
        from open_clip.model import CLIP, CustomTextCLIP
    except ImportError:
        return False
    return getattr(type(module), "encode_text", None) in (CLIP.encode_text, CustomTextCLIP.encode_text)


def wrap_module(module: torch.nn.Module, transform, tokenizer, *, identity: ModelIdentity,
                device: torch.device, precision: str) -> ModuleAdapter:
    """Adapter for an in-memory open_clip-style module (the in-training evaluation path)."""
    if not (hasattr(module, "encode_image") and hasattr(module, "encode_text")):
        raise ModelLoadError(f"{type(module).__name__}: expected a module with encode_image() and encode_text()")
    module.eval().to(device)
    return ModuleAdapter(module, tokenizer, identity=identity, image_transform=transform,
                         preprocessing={"transform": repr(transform)}, device=device, precision=precision)


def resolve_callable(target: str):
    """``module.path:function`` or ``path/to/file.py:function`` -> (callable, qualified name)."""
    mod_name, sep, fn_name = target.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise ModelLoadError(f"py:{target}: expected py:module.path:function or py:path/to/file.py:function")
    if mod_name.endswith(".py"):
        path = Path(mod_name).expanduser().resolve()
        if not path.is_file():
            raise ModelLoadError(f"py:{target}: file {path} not found")
        name = f"sparc_eval_user_{sha256_json(str(path))[:12]}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        qual = f"{path}:{fn_name}"
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ModelLoadError(f"py:{target}: cannot import module {mod_name!r} ({e})") from None
        qual = f"{mod_name}:{fn_name}"
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelLoadError(f"py:{target}: {mod_name!r} has no callable named {fn_name!r}")
    return fn, qual


def _source_sha256(fn) -> str | None:
    """sha256 of the file defining ``fn`` (or its class, for a callable object); None without one."""
    for obj in (inspect.unwrap(fn), type(fn)):
        try:
            source = inspect.getsourcefile(obj)
        except TypeError:
            continue
        if source and Path(source).is_file():
            return sha256_file(source)
    return None


def load(spec: str, pretrained: str | None = None, *, device: torch.device, precision: str, name: str,
         seed: int = 0, preprocessing: dict | None = None, **_ignored) -> ModelAdapter:
    fn, qual = resolve_callable(spec.split(":", 1)[1])
    offered = {"pretrained": pretrained, "device": device, "precision": precision, "seed": seed,
               "preprocessing": preprocessing}
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    torch.manual_seed(seed)
    built = fn(**kwargs)
    if pretrained and Path(pretrained).is_file():
        pre_id = sha256_file(pretrained)
    else:
        pre_id = pretrained
    identity = ModelIdentity(spec=spec, pretrained=pretrained, name=name,
                             weights_sha256=sha256_json({"callable": qual, "source": _source_sha256(fn), "seed": seed,
                                                         "pretrained": pre_id}))
    if isinstance(built, ModelAdapter):
        built.identity = identity
        if "device" in kwargs:  # otherwise its weights stay where the callable put them
            built.device = device
        built.precision = precision
        return built
    if isinstance(built, tuple) and len(built) == 3:
        return wrap_module(built[0], built[1], built[2], identity=identity, device=device, precision=precision)
    raise ModelLoadError(f"py:{qual} returned {type(built).__name__}; expected a ModelAdapter or a tuple "
                         f"(module, image_transform, tokenizer)")


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity before loading: the strings plus the sha256 of the file that defines the callable
    (``path/to/file.py`` or ``module.path``, found without importing it), so an edited model is not
    skipped as identical."""
    module = spec.split(":", 1)[1].rpartition(":")[0]
    if module.endswith(".py"):
        path: Path | None = Path(module).expanduser()
    else:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        path = Path(found.origin) if found is not None and found.origin else None
    return spec_fingerprint(spec, pretrained, sha256_file(path) if path is not None and path.is_file() else None)
