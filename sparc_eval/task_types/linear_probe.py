"""Linear probe: logistic regression on frozen image embeddings (CLIP's protocol, see ``metrics.linear_probe``).

Features (cached by the engine): ``post_projection`` (default) is the adapter's l2-normalised
joint-space image embedding, the same cache entries zero-shot tasks use, as CLIP_benchmark;
``pre_projection`` is the pooled image feature before the projection (the CLIP paper's probe
features; models with ``encode_image_features``), l2-normalised too. Splits: train = ``dataset.split`` set to
``train_split``, test = the task's ``dataset.split``, validation = ``val_split`` or, when empty, a
stratified ``val_proportion`` of train carved with the run's seed. The L2 strength is chosen on
validation over the 97-point grid 1e-6..1e6 (coarse-to-fine), the probe is refit on train +
validation and scored once on test: ``top1``, ``top5``, ``mean_per_class_recall``.

Few-shot (``fewshot_k: [1, 5, 10]``): for each k and each of ``fewshot_seeds`` seeds, k images per
class are drawn from the training part (validation kept aside), λ is chosen on validation, and the
probe trained on the k-shot set alone is scored on test; ``top1.<k>shot`` etc. are the means over
seeds, the per-seed values and standard deviations are in ``details.fewshot``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import progress
from ..data.base import get_reader
from ..data.classification import ClassificationSet
from ..errors import ConfigError, DataError, SparcEvalError
from ..fileio import sha256_json
from ..metrics.classification import score_counts
from ..metrics.linear_probe import (
    COARSE_POINTS,
    FINAL_TOL,
    GRID,
    ProbeProblem,
    fewshot_indices,
    stratified_split,
    sweep,
)
from ..params import Param
from ..task_common.classification import classification_result, require_classification
from .base import EvalContext, TaskResult, TaskType

FEATURES = {
    "post_projection": "post_projection: the adapter's l2-normalised joint-space image embedding (engine cache)",
    "pre_projection": "pre_projection: the pooled image features before the joint-space projection, l2-normalised "
                      "(engine cache)",
}


@dataclass
class ProbeData:
    """The splits of a probe; ``val`` is None when it is carved from ``train``."""

    train: ClassificationSet
    val: ClassificationSet | None
    test: ClassificationSet
    fingerprint: str


class LinearProbe(TaskType):
    name = "linear_probe"
    dataset_kind = "classification"
    description = "logistic-regression probe on frozen image embeddings, L2 chosen on validation (CLIP protocol)"
    params = {
        "train_split": Param("str", "train", "dataset.split of the training images"),
        "val_split": Param("str", "", "dataset.split of the validation images ('' = carve from train)"),
        "val_proportion": Param("float", 0.2, "share of each training class carved out for validation, in (0, 1)",
                                min=0.0, max=1.0),
        "features": Param("str", "post_projection", "post_projection: the l2-normalised joint-space embedding; "
                          "pre_projection: the pooled features before the projection (l2-normalised)",
                          choices=("post_projection", "pre_projection")),
        "full": Param("bool", True, "fit the full-data probe (top1, top5, mean_per_class_recall)"),
        "fewshot_k": Param("list[int]", [], "few-shot probes with k training images per class (each k >= 1)", min=1),
        "fewshot_seeds": Param("int", 3, "seeds per few-shot k (mean and std reported)", min=1),
        "max_iter": Param("int", 1000, "L-BFGS iterations per fit (at most)", min=1),
    }

    @classmethod
    def metric_keys(cls, params):
        if not params["full"] and not params["fewshot_k"]:
            raise ConfigError("params: linear_probe needs full: true or a non-empty fewshot_k")
        if not 0 < params["val_proportion"] < 1:
            raise ConfigError(f"params.val_proportion: {params['val_proportion']!r} leaves no training or no "
                              f"validation images; expected a share strictly between 0 and 1")
        repeated = sorted({k for k in params["fewshot_k"] if params["fewshot_k"].count(k) > 1})
        if repeated:
            raise ConfigError(f"params.fewshot_k: {repeated} listed more than once; expected distinct values")
        keys = ["top1", "top5", "mean_per_class_recall"] if params["full"] else []
        for k in params["fewshot_k"]:
            keys += [f"top1.{k}shot", f"top5.{k}shot", f"mean_per_class_recall.{k}shot"]
        return keys

    def _split(self, split: str, limit: int | None) -> ClassificationSet:
        cfg = {**self.config.dataset, "split": split}
        data = require_classification(get_reader(cfg["format"]).load(cfg), self.config.name)
        return data.limit(limit)

    def load_data(self, limit: int | None = None) -> ProbeData:
        if limit not in self._data:
            p = self.config.params
            test = require_classification(super().load_data(limit), self.config.name)
            train = self._split(p["train_split"], limit)
            val = self._split(p["val_split"], limit) if p["val_split"] else None
            for name, part in (("train", train), ("validation", val)):
                if part is not None and part.classnames != test.classnames:
                    raise DataError(f"task {self.config.name!r}: the {name} split has {part.n_classes} classes "
                                    f"{part.classnames[:3]}..., the test split {test.n_classes} {test.classnames[:3]}...; "
                                    f"expected the same classes in the same order")
            fp = sha256_json([train.fingerprint, val.fingerprint if val else None, test.fingerprint])
            self._data[limit] = ProbeData(train, val, test, fp)
        return self._data[limit]

    @staticmethod
    def _features(engine, kind: str):
        """The engine method giving the probe's features: l2-normalised embeddings or pre-projection features."""
        if kind == "post_projection":
            return engine.image_embeddings

        def pre(images, desc):
            return torch.nn.functional.normalize(engine.image_features(images, desc=desc), dim=-1)
        return pre

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        p = self.config.params
        data = self.load_data(ctx.limit)
        name = self.config.name
        if p["features"] == "pre_projection" and not model.supports("image_features"):
            raise SparcEvalError(f"task {name!r}: features=pre_projection needs pre-projection image features, which "
                                 f"{model.identity.name!r} does not expose; use features=post_projection")
        embed = self._features(ctx.engine, p["features"])
        emb_train = embed(data.train.images, desc=f"{name}: train images")
        emb_test = embed(data.test.images, desc=f"{name}: test images")
        y_train = data.train.labels
        if data.val is None:
            tr, va = stratified_split(y_train, p["val_proportion"], ctx.seed)
            if len(va) == 0:
                raise DataError(f"task {name!r}: cannot carve a validation split from {len(y_train)} training images")
            x_tr, y_tr, x_va, y_va = emb_train[tr], y_train[tr], emb_train[va], y_train[va]
            val_source = f"stratified {p['val_proportion']:.0%} of each training class, seed {ctx.seed}"
        else:
            x_tr, y_tr = emb_train, y_train
            x_va = embed(data.val.images, desc=f"{name}: validation images")
            y_va = data.val.labels
            val_source = f"dataset split {p['val_split']!r}"
        n_classes = data.test.n_classes
        device = getattr(model, "device", torch.device("cpu"))
        x_va_dev, x_test_dev = x_va.to(device), emb_test.to(device)
        heads, details = {}, {}
        if p["full"]:
            problem = ProbeProblem(x_tr, y_tr, n_classes, device, p["max_iter"])
            with progress.phase("probe sweep", note=f"{len(y_tr)} train, {len(y_va)} validation images",
                                bars=ctx.progress):
                sw = sweep(problem, x_va_dev, y_va)
            del problem  # its centred copy of the features: the refit makes its own
            final = ProbeProblem(torch.cat([x_tr, x_va]), np.concatenate([y_tr, y_va]), n_classes, device,
                                 p["max_iter"]).fit(sw.lam, sw.probes[sw.best], tol=FINAL_TOL)
            heads[""] = [score_counts(final.scores(x_test_dev).cpu(), data.test.labels)]
            details["chosen_lambda"] = sw.lam
            details["sklearn_C_equivalent"] = 1.0 / (sw.lam * (len(y_tr) + len(y_va)))
            details["sweep"] = sw.table()
            details["final_fit"] = {"n_train": len(y_tr) + len(y_va), "n_iter": final.n_iter, "converged": final.converged}
        fewshot = {}
        for k in p["fewshot_k"]:
            runs, lams = [], []
            for j in range(p["fewshot_seeds"]):
                try:
                    idx = fewshot_indices(y_tr, k, ctx.seed + j)
                except ValueError as e:
                    raise ConfigError(f"task {name!r}: fewshot_k={k}: {e}") from None
                problem = ProbeProblem(x_tr[idx], y_tr[idx], n_classes, device, p["max_iter"])
                with progress.phase("probe sweep", note=f"{k}-shot, seed {ctx.seed + j}", bars=ctx.progress):
                    sw = sweep(problem, x_va_dev, y_va)
                probe = problem.fit(sw.lam, sw.probes[sw.best], tol=FINAL_TOL)
                runs.append(score_counts(probe.scores(x_test_dev).cpu(), data.test.labels))
                lams.append(sw.lam)
            heads[f".{k}shot"] = runs
            fewshot[k] = {"seeds": [ctx.seed + j for j in range(p["fewshot_seeds"])], "lambda": lams}
        metrics, records, aggregations, chance, per_run = classification_result(data.test, heads)
        for k, info in fewshot.items():
            for m, values in per_run[f".{k}shot"].items():
                info[m] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1
                           else 0.0, "per_seed": values}
        details.update({
            "features": FEATURES[p["features"]],
            "solver": "multinomial logistic regression, mean cross-entropy + lambda/2 ||W||^2 (bias unpenalised), "
                      "full-batch L-BFGS, warm-started; gradient tolerance 1e-4 in the search, 1e-6 for the refit",
            "lambda_grid": {"start": float(GRID[0]), "stop": float(GRID[-1]), "num": len(GRID), "spacing": "log",
                            "coarse_points": COARSE_POINTS, "refine": "halving steps 8, 4, 2, 1 around the best"},
            "selection": "highest validation top-1, ties to the larger lambda", "validation": val_source,
            "refit": "train + validation at the chosen lambda (few-shot: the k-shot set only)",
            "n_train": len(y_tr), "n_val": len(y_va), "n_test": len(data.test.images),
            "n_classes": n_classes, "device": str(device), "torch_threads": torch.get_num_threads(),
        })
        if fewshot:
            details["fewshot"] = {str(k): v for k, v in fewshot.items()}
        return TaskResult(metrics=metrics, main_metric=self.config.main_metric, records=records,
                          aggregations=aggregations, chance=chance, details=details, n_total=data.test.n_total,
                          n_used=len(data.test.images), dataset_fingerprint=data.fingerprint)
