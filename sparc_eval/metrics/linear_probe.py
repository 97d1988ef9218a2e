"""Linear probe: multinomial logistic regression on frozen features, L2 strength chosen on validation.

For a strength λ the probe minimises ``mean_i CE(W x_i + b, y_i) + (λ/2) ||W||²`` (the bias is not
penalised): scikit-learn's ``LogisticRegression(C=1/(λ N))`` (multinomial, lbfgs). The sweep follows
CLIP (Radford et al. 2021, App. A.3) and ELEVATER: λ on the grid ``logspace(-6, 6, 97)``, first the 7
points 1e-6, 1e-4, ..., 1e6, then around the best point the neighbours at half the previous step
(8, 4, 2, 1 grid steps), keeping the best each time; best = highest validation top-1, ties to the
larger λ. The final probe is refit at the chosen λ on train + validation and scored once on test.

Solver: full-batch L-BFGS in torch (strong-Wolfe line search, at most ``max_iter`` iterations, as
scikit-learn's default 1000 in CLIP's protocol), each fit warm-started from the nearest λ already
fitted, until the largest gradient entry is below ``SWEEP_TOL`` (1e-4, scikit-learn's default) during
the search and ``FINAL_TOL`` (1e-6) for the refit that is scored. Features are centred by the training
mean and scaled so the mean squared norm equals the dimension; the fit runs there with λ' = λ s²
(exactly the same optimum: the bias absorbs the centring and W = s W'), which keeps the gradient
tolerance meaningful for l2-normalised features.
Deterministic for fixed inputs, device and thread count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

GRID = np.logspace(-6, 6, 97)
COARSE_POINTS = 7
SWEEP_TOL = 1e-4
FINAL_TOL = 1e-6


@dataclass
class Probe:
    """A fitted probe in the original feature space: scores = x @ weight.T + bias. ``converged``: the
    largest entry of the final gradient is within the fit's tolerance (L-BFGS may also stop on
    ``max_iter`` or a stalled objective)."""

    weight: torch.Tensor
    bias: torch.Tensor
    lam: float
    n_iter: int
    converged: bool

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weight) @ self.weight.T + self.bias


class ProbeProblem:
    """One training set, prepared once (centred, scaled, on ``device``) for fits at many λ."""

    def __init__(self, x: torch.Tensor, y: np.ndarray | torch.Tensor, n_classes: int, device: str | torch.device = "cpu",
                 max_iter: int = 1000, tol: float = SWEEP_TOL, block: int | None = None):
        x = x.to(device=device, dtype=torch.float32)
        self.mean = x.mean(0)
        self.n, self.d = x.shape
        xc = x - self.mean
        del x  # the converted copy, if one was made: centred and scaled in place below
        self.scale = float((self.d / xc.pow(2).sum(1).mean().clamp(min=1e-12)).sqrt())
        self.z = xc.mul_(self.scale)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.int64, device=device)
        self.n_classes, self.max_iter, self.tol = n_classes, max_iter, tol
        self.block = block or max(1024, 2 ** 25 // max(n_classes, 1))
        self.evaluations = 0

    def loss_and_grad(self, w: torch.Tensor, b: torch.Tensor, lam_scaled: float
                      ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Objective and its gradients in the scaled space, over row blocks (memory O(block x C))."""
        self.evaluations += 1
        loss = 0.0
        gw = w * lam_scaled
        gb = torch.zeros_like(b)
        for a in range(0, self.n, self.block):
            z, y = self.z[a:a + self.block], self.y[a:a + self.block]
            rows = torch.arange(len(y), device=z.device)
            logp = torch.addmm(b, z, w.T).log_softmax(1)
            loss -= float(logp[rows, y].sum())
            p = logp.exp_()
            p[rows, y] -= 1
            gw.addmm_(p.T, z, alpha=1.0 / self.n)
            gb.add_(p.sum(0), alpha=1.0 / self.n)
        return loss / self.n + 0.5 * lam_scaled * float(w.pow(2).sum()), gw, gb

    def fit(self, lam: float, init: Probe | None = None, tol: float | None = None) -> Probe:
        """The probe at strength ``lam`` (warm-started from ``init`` when given; ``tol`` overrides the
        problem's gradient tolerance)."""
        if init is None:
            w = torch.zeros(self.n_classes, self.d, device=self.z.device)
            b = torch.zeros(self.n_classes, device=self.z.device)
        else:
            w = init.weight.to(self.z) / self.scale
            b = init.bias.to(self.z) + init.weight.to(self.z) @ self.mean
        lam_scaled = lam * self.scale ** 2
        tol = self.tol if tol is None else tol
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=tol, tolerance_change=1e-9,
                                history_size=20, line_search_fn="strong_wolfe")
        last: dict[str, torch.Tensor] = {}

        def closure():
            loss, w.grad, b.grad = self.loss_and_grad(w, b, lam_scaled)
            last.update(w=w.detach().clone(), b=b.detach().clone(), gw=w.grad, gb=b.grad)
            return loss

        with torch.no_grad():
            opt.step(closure)
            if not (torch.equal(last["w"], w) and torch.equal(last["b"], b)):  # the line search ended elsewhere
                closure()
        n_iter = int(opt.state[w]["n_iter"])
        converged = max(float(last["gw"].abs().max()), float(last["gb"].abs().max())) <= tol
        weight = w * self.scale
        return Probe(weight, b - weight @ self.mean, float(lam), n_iter, converged)


def top1(probe: Probe, x: torch.Tensor, y: np.ndarray) -> float:
    """Top-1 accuracy (percent, argmax) of ``probe`` on features ``x`` [N, D] with labels ``y``."""
    pred = probe.scores(x).argmax(1).cpu().numpy()
    return 100.0 * float((pred == np.asarray(y)).mean())


@dataclass
class Sweep:
    """Outcome of the λ search: the chosen grid index, every fit's validation top-1, the fits."""

    best: int
    val_top1: dict[int, float]
    probes: dict[int, Probe] = field(repr=False)
    grid: np.ndarray = field(default_factory=lambda: GRID)

    @property
    def lam(self) -> float:
        return float(self.grid[self.best])

    def table(self) -> list[dict]:
        return [{"lambda": float(self.grid[i]), "val_top1": self.val_top1[i], "n_iter": self.probes[i].n_iter,
                 "converged": self.probes[i].converged} for i in sorted(self.val_top1)]


def sweep(problem: ProbeProblem, x_val: torch.Tensor, y_val: np.ndarray, grid: np.ndarray = GRID,
          coarse: int = COARSE_POINTS) -> Sweep:
    """Coarse-to-fine search of λ over ``grid`` on validation (see the module docstring)."""
    n = len(grid)
    if (n - 1) % (coarse - 1):
        raise ValueError(f"a grid of {n} points cannot hold {coarse} evenly spaced coarse points")
    step = (n - 1) // (coarse - 1)
    probes: dict[int, Probe] = {}
    scores: dict[int, float] = {}

    def run(i: int) -> None:
        if i in probes:
            return
        init = None
        if probes:
            init = probes[min(probes, key=lambda j: (abs(j - i), -j))]
        probes[i] = problem.fit(float(grid[i]), init)
        scores[i] = top1(probes[i], x_val, y_val)

    def pick(candidates) -> int:
        return max(candidates, key=lambda i: (scores[i], i))

    for i in range(n - 1, -1, -step):
        run(i)
    best = pick(list(probes))
    step //= 2
    while step >= 1:
        around = [j for j in (best - step, best + step) if 0 <= j < n]
        for j in around:
            run(j)
        best = pick([best, *around])
        step //= 2
    return Sweep(best, scores, probes, grid)


def by_class(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, its indices in increasing order) for each class present, classes ascending; O(N log N)."""
    y = np.asarray(labels)
    order = np.argsort(y, kind="stable")
    classes, starts = np.unique(y[order], return_index=True)
    return [(int(c), idx) for c, idx in zip(classes, np.split(order, starts[1:]))]


def stratified_split(labels: np.ndarray, proportion: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): per class, ``round(n_c * proportion)`` seeded picks go to
    validation (at least 1 and at most n_c - 1 when n_c >= 2; none for singletons). Sorted."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for _, idx in by_class(y):
        k = round(len(idx) * proportion)
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx.astype(np.int64)


def fewshot_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k seeded picks per class (sorted indices); ``ValueError`` naming a class with fewer than k, or
    for k < 1."""
    if k < 1:
        raise ValueError(f"k={k}: expected at least 1 image per class")
    rng = np.random.default_rng(seed)
    out = []
    for c, idx in by_class(labels):
        if len(idx) < k:
            raise ValueError(f"class {c} has {len(idx)} training images, fewer than k={k}")
        out.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
