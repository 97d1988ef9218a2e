"""Zero-shot image classification: a classifier made of text embeddings of class prompts.

Each class's prompts are the templates filled with its name; the class vector is the mean of the
l2-normalised prompt embeddings, re-normalised (CLIP's prompt ensembling); an image's scores are
its cosine similarities with the class vectors. All prompts are encoded in one batched, cached
engine call, so a template set is encoded once per model. ``templates`` is a shipped set
(``openai_imagenet``: CLIP's 80; ``simple_imagenet``: 7; ``cifar``: 18; ``shapes``), ``classname``
(the class name alone, the SPARC paper's Table 1 protocol), ``dataset`` (the templates shipped with
the data, e.g. CLIP_benchmark WebDataset folders), or a file: ``.txt`` with one template per line,
``.json`` with a list of templates or a ``{class name: [prompts]}`` dict (CuPL). Templates mark the
class name with ``{c}`` or ``{}``. The prompt set (name, source, templates, hashes) is recorded.

Reports ``top1``, ``top5``, ``mean_per_class_recall`` (ties by expectation, ``metrics.classification``)
and ``top1.<subset>`` for each declared subset the data provides (ImageNet-C corruptions and
severities). Per-sample records: id, cluster, label, pred, rank (classes strictly above the true
one), ties, and the hit probabilities the aggregations average; for ``examples`` images also the
top-5 classes (``top``, ``top_hit``; ``task_common.examples``). Class names are in ``details`` when
there are at most ``CLASSNAMES_SHOWN`` classes (a confusion matrix on the leaderboard page).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classification import ClassificationSet, resource_path
from ..errors import ConfigError
from ..fileio import sha256_file, sha256_json
from ..metrics.classification import (
    embedding_counts,
)
from ..params import Param
from ..task_common import examples
from ..task_common.classification import classification_result, require_classification
from .base import EvalContext, TaskResult, TaskType

SHIPPED_TEMPLATES = {"openai_imagenet": "templates_openai_imagenet.txt", "simple_imagenet": "templates_simple_imagenet.txt",
                     "cifar": "templates_cifar.txt", "shapes": "templates_shapes.txt"}
SPECIAL_TEMPLATES = ("classname", "dataset")
CLASSNAMES_SHOWN = 100


@dataclass
class PromptSet:
    """Prompts of every class: ``texts`` [M] and ``owner`` [M] (class index of each text)."""

    name: str
    source: str
    templates: list[str] | None
    texts: list[str]
    owner: np.ndarray

    def details(self, classnames: Sequence[str]) -> dict:
        return {"templates": self.name, "source": self.source, "n_templates": None if self.templates is None
                else len(self.templates), "template_list": self.templates, "n_prompts": len(self.texts),
                "prompts_sha256": sha256_json(self.texts), "classnames_sha256": sha256_json(list(classnames)),
                "ensembling": "mean of l2-normalised prompt embeddings, re-normalised"}


def _fill(template: str, name: str) -> str:
    return template.replace("{c}", name).replace("{}", name)


def _check_templates(templates: list[str], source: str) -> list[str]:
    bad = [t for t in templates if "{c}" not in t and "{}" not in t]
    if bad or not templates:
        raise ConfigError(f"templates {source}: template {bad[0] if bad else '(none)'!r} has no class-name "
                          f"placeholder; expected '{{c}}' or '{{}}' in every template")
    return templates


def template_source(value: str) -> Path | None:
    """The file behind a ``templates`` value (None for ``classname``/``dataset``); ``ConfigError`` when
    it is neither a shipped set nor an existing file."""
    if value in SPECIAL_TEMPLATES:
        return None
    if value in SHIPPED_TEMPLATES:
        return resource_path(SHIPPED_TEMPLATES[value])
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"params.templates {value!r}: not a shipped template set "
                          f"({', '.join([*SHIPPED_TEMPLATES, *SPECIAL_TEMPLATES])}) and no such template file")
    if path.suffix not in (".txt", ".json"):
        raise ConfigError(f"params.templates {path}: expected a .txt (one template per line) or .json file")
    return path


def _file_source(value: str, path: Path) -> str:
    if value in SHIPPED_TEMPLATES:
        return f"shipped: {path.name}"
    return f"{path.resolve()} (sha256 {sha256_file(path, memo=False)})"


def build_prompts(value: str, data: ClassificationSet) -> PromptSet:
    """The prompts of every class of ``data`` for a ``templates`` value (see the module docstring)."""
    names = data.classnames
    path = template_source(value)
    per_class: list[list[str]] | None = None
    if value == "classname":
        templates, source = ["{c}"], "class name alone"
    elif value == "dataset":
        if not data.templates:
            raise ConfigError("params.templates 'dataset': this dataset ships no prompt templates; choose "
                              f"one of {', '.join(SHIPPED_TEMPLATES)}, classname, or a template file")
        templates, source = _check_templates(list(data.templates), "from the dataset"), "dataset"
    elif path.suffix == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"params.templates {path}: not valid JSON ({e})") from None
        source = _file_source(value, path)
        if isinstance(obj, list) and all(isinstance(t, str) for t in obj):
            templates = _check_templates(obj, str(path))
        elif isinstance(obj, dict):
            missing = [n for n in names if not isinstance(obj.get(n), list) or not obj[n]]
            if missing:
                raise ConfigError(f"params.templates {path}: no prompt list for class(es) {missing[:5]}; "
                                  f"expected {{class name: [prompts]}} for all {len(names)} classes")
            templates, per_class = None, [[str(p) for p in obj[n]] for n in names]
        else:
            raise ConfigError(f"params.templates {path}: expected a list of templates or a "
                              f"{{class name: [prompts]}} object")
    else:
        try:
            lines = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        except UnicodeDecodeError:
            raise ConfigError(f"params.templates {path}: not a UTF-8 text file") from None
        source, templates = _file_source(value, path), _check_templates(lines, str(path))
    if per_class is None:
        per_class = [[_fill(t, n) for t in templates] for n in names]
    texts = [t for ps in per_class for t in ps]
    owner = np.asarray([c for c, ps in enumerate(per_class) for _ in ps], dtype=np.int64)
    return PromptSet(value, source, templates, texts, owner)


def class_embeddings(text_emb: torch.Tensor, owner: np.ndarray, n_classes: int) -> torch.Tensor:
    """[C, D]: per class, the mean of its (already l2-normalised) prompt embeddings, re-normalised."""
    idx = torch.as_tensor(owner, dtype=torch.int64)
    total = torch.zeros(n_classes, text_emb.shape[1], dtype=torch.float32).index_add_(0, idx, text_emb.float())
    count = torch.bincount(idx, minlength=n_classes).clamp(min=1).to(torch.float32)
    return F.normalize(total / count[:, None], dim=-1)


class ZeroShotClassification(TaskType):
    name = "zeroshot_classification"
    dataset_kind = "classification"
    description = "zero-shot classification with a text-prompt classifier (top-1/top-5/mean per-class recall)"
    params = {
        "templates": Param("str", "openai_imagenet", "prompt templates: openai_imagenet, simple_imagenet, cifar, "
                                                     "shapes, classname, dataset, or a .txt/.json file"),
        "subsets": Param("list[str]", [], "subsets reported as top1.<subset> (e.g. ImageNet-C corruptions, "
                                          "severity_3)"),
        "block": Param("int", 4096, "images per block of the score computation (memory bound)", min=1),
        "examples": examples.PARAM,
    }

    @classmethod
    def metric_keys(cls, params):
        return ["top1", "top5", "mean_per_class_recall", *[f"top1.{s}" for s in params["subsets"]]]

    @classmethod
    def from_config(cls, config, reader=None):
        template_source(config.params["templates"])
        return cls(config, reader)

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        data = require_classification(self.load_data(ctx.limit), self.config.name)
        p = self.config.params
        prompts = build_prompts(p["templates"], data)
        text = ctx.engine.text_embeddings(prompts.texts, desc=f"{self.config.name}: prompts")
        classifier = class_embeddings(text, prompts.owner, data.n_classes)
        img = ctx.engine.image_source(data.images, desc=f"{self.config.name}: images")
        counts = embedding_counts(img, classifier, data.labels, block=p["block"],
                                  device=getattr(model, "device", None))
        metrics, records, aggregations, ch, _ = classification_result(data, {"": [counts]}, p["subsets"])
        details = {"n_images": len(data.images), "n_classes": data.n_classes,
                   "n_classes_with_images": int(np.unique(data.labels).size), "prompts": prompts.details(data.classnames),
                   "prompts_truncated": ctx.engine.count_truncated(prompts.texts),
                   "scores": "cosine similarity of l2-normalised image and class embeddings",
                   "ties": "expected value over random tie order", **data.info}
        missing = [s for s in p["subsets"] if f"top1.{s}" not in metrics]
        if missing:
            details["subsets_without_images"] = missing
        if data.n_classes <= CLASSNAMES_SHOWN:
            details["classnames"] = list(data.classnames)
        if p["examples"]:
            idx = examples.example_indices(len(data.images), p["examples"])
            top = examples.top_candidates(examples.rows_of(img, idx), classifier)
            for q, i in enumerate(idx):
                records[i]["top"] = [int(c) for c in top[q]]
                records[i]["top_hit"] = [int(c == data.labels[i]) for c in top[q]]
            shown = sorted({int(c) for row in top for c in row})
            details["examples"] = examples.examples_details(data.images, idx, "image → classes",
                                                            {str(c): data.classnames[c] for c in shown})
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, chance=ch, details=details, n_total=data.n_total,
                          n_used=len(data.images), dataset_fingerprint=data.fingerprint)
