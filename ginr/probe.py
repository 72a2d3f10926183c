"""Probes: how much of a label a feature vector per instance (a modulation, the raw pixels) holds, measured by small
classifiers trained on one set of instances and scored on another (functa's classification probe, issue 17).

Features are (N, D) float tensors, labels (N,) integer class ids. :func:`probe_accuracies` runs every probe on one
feature set: features standardised per dimension with the training instances' mean and std (optionally projected on
the training instances' first ``k`` principal components), then a multinomial logistic regression (full-batch L-BFGS,
small L2), a one-hidden-layer MLP (full-batch Adam) and a nearest-neighbour vote, each scored by held-out accuracy.
Every probe is deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

Classifier = Callable[[torch.Tensor], torch.Tensor]
"""``classifier(features)`` -> logits (N, classes)."""


@dataclasses.dataclass(frozen=True)
class Standardiser:
    """Per-dimension ``(x - mean) / std`` with the statistics of the features it was fitted on (a constant dimension
    keeps std 1, so it maps to 0 rather than dividing by zero)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor) -> Standardiser:
        std = features.std(0, unbiased=False)
        return cls(features.mean(0), torch.where(std > 1e-8, std, torch.ones_like(std)))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


@dataclasses.dataclass(frozen=True)
class PCA:
    """Projection on the first principal components (``components``, (k, D), orthonormal rows) of the features it was
    fitted on; :meth:`inverse` maps coordinates back to feature space."""

    mean: torch.Tensor
    components: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor, k: int) -> PCA:
        """The first ``k`` components of ``features`` (N, D); ``k`` above min(N, D) is refused."""
        if not 1 <= k <= min(features.shape):
            raise ValueError(f"--pca {k}: must be between 1 and {min(features.shape)} (instances, dimensions)")
        mean = features.mean(0)
        _, _, vh = torch.linalg.svd(features - mean, full_matrices=False)
        return cls(mean, vh[:k])

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.components.T

    def inverse(self, coordinates: torch.Tensor) -> torch.Tensor:
        return coordinates @ self.components + self.mean


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, test) positions of ``labels``: each class's instances shuffled with ``seed`` and
    ``round(test_fraction x count)`` of them (at least one, and one fewer than all, for a class of two or more) held
    out, so both parts keep the classes' proportions."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction {test_fraction}: must be between 0 and 1")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = min(max(round(test_fraction * len(members)), 1), len(members) - 1) if len(members) > 1 else 0
        test.append(members[:count])
        train.append(members[count:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def train_linear(features: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float = 1e-3) -> Classifier:
    """Multinomial logistic regression: cross-entropy plus ``l2`` x the squared weights (the bias is free), minimised
    full-batch by L-BFGS from zero (deterministic)."""
    weight = torch.zeros(features.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight + bias, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()
    return lambda x: x @ weight + bias


def train_mlp(
    features: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    seed: int,
    hidden: int = 128,
    steps: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
) -> Classifier:
    """One hidden layer of ``hidden`` ReLU units, initialised from ``seed`` (PyTorch's Linear init) and trained
    full-batch by AdamW for ``steps`` steps on the cross-entropy."""
    generator = torch.Generator().manual_seed(seed)

    def linear(fan_in: int, fan_out: int) -> list[torch.Tensor]:
        bound = fan_in**-0.5
        return [(torch.rand(size, generator=generator) * 2 - 1).mul_(bound) for size in ((fan_in, fan_out), (fan_out,))]

    params = [p.requires_grad_() for p in linear(features.shape[1], hidden) + linear(hidden, n_classes)]

    def logits(x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = params
        return torch.relu(x @ w1 + b1) @ w2 + b2

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(logits(features), labels).backward()
            optimizer.step()
    for p in params:
        p.requires_grad_(False)
    return logits


def nearest_neighbour(
    features: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int = 1, metric: str = "cosine"
) -> Classifier:
    """A ``k``-nearest-neighbour vote among ``features`` (``metric``: ``"cosine"`` or ``"euclidean"``); the
    "logits" are the vote counts, each neighbour's vote weighted by ``1 - rank / (k + 1)`` so ties go to the nearer
    neighbours."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"--knn-metric {metric!r}: choose cosine or euclidean")
    k = min(k, len(features))
    bank = F.normalize(features, dim=1) if metric == "cosine" else features
    one_hot = F.one_hot(labels, n_classes).float()
    weights = 1 - torch.arange(k) / (k + 1)

    def votes(x: torch.Tensor) -> torch.Tensor:
        if metric == "cosine":
            distance = -F.normalize(x, dim=1) @ bank.T
        else:
            distance = torch.cdist(x, bank)
        nearest = distance.topk(k, dim=1, largest=False).indices
        return (one_hot[nearest] * weights[:, None]).sum(1)

    return votes


def accuracy(classifier: Classifier, features: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``features`` whose highest logit is their label."""
    return float((classifier(features).argmax(1) == labels).float().mean())


PROBES = ("linear", "mlp", "knn")
"""The probes :func:`probe_accuracies` reports, in its order."""


@torch.no_grad()
def probe_accuracies(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    n_classes: int,
    *,
    pca: int | None = None,
    seed: int = 0,
    knn: int = 1,
    knn_metric: str = "cosine",
) -> dict[str, float]:
    """Held-out accuracy of each of :data:`PROBES` on one feature set: ``train`` (N, D) features standardised with
    their own statistics (then projected on their first ``pca`` principal components), ``test`` the same way.

    Without ``pca``, features with more dimensions than training instances (a modulation has tens of thousands) are
    given to the linear and MLP probes in coordinates of the training instances' span, which loses nothing the
    training instances hold: a linear model with an L2 penalty has its weights in that span (the representer theorem),
    so its predictions are the same, at the cost of N instead of D dimensions; the MLP gets them scaled by sqrt(N / D),
    so that its first layer's initial pre-activations have the scale they have on the full features. The
    nearest-neighbour probe keeps the full features."""
    scale = Standardiser.fit(train)
    train, test = scale(train), scale(test)
    if pca is not None:
        projection = PCA.fit(train, pca)
        train, test = projection(train), projection(test)
    neighbours = nearest_neighbour(train, train_labels, n_classes, knn, knn_metric)
    knn_accuracy = accuracy(neighbours, test, test_labels)
    mlp_scale = 1.0
    if pca is None and train.shape[1] > train.shape[0]:
        span = PCA.fit(train, train.shape[0])
        mlp_scale = (train.shape[0] / train.shape[1]) ** 0.5  # the MLP's first layer sees the full features' scale
        train, test = span(train), span(test)
    classifiers = {
        "linear": train_linear(train, train_labels, n_classes),
        "mlp": train_mlp(train * mlp_scale, train_labels, n_classes, seed),
    }
    mlp = classifiers["mlp"]
    classifiers["mlp"] = lambda x: mlp(x * mlp_scale)
    return {name: accuracy(classifiers[name], test, test_labels) if name != "knn" else knn_accuracy for name in PROBES}
