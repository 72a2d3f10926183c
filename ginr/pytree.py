"""Params pytrees: nested dicts of tensors, and their flat dotted-name form used by checkpoints and modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch


def flatten(tree: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    """``{"a": {"b": t}}`` -> ``{"a.b": t}`` (insertion order kept)."""
    flat = {}
    for key, value in tree.items():
        if "." in key:
            raise ValueError(f"pytree key {key!r} contains '.', which is reserved as the path separator")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, torch.Tensor]) -> dict:
    """Inverse of :func:`flatten`."""
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def tree_map(fn: Callable, tree: Mapping, *rest: Mapping) -> dict:
    """Apply ``fn`` leaf-wise to one or more trees of the same structure."""
    return {
        key: tree_map(fn, value, *(r[key] for r in rest))
        if isinstance(value, Mapping)
        else fn(value, *(r[key] for r in rest))
        for key, value in tree.items()
    }


def leaves(tree: Mapping) -> list[torch.Tensor]:
    """The tensors of a tree, in flatten order."""
    return list(flatten(tree).values())


def to_device(batch: torch.Tensor | Mapping, device: torch.device | str) -> torch.Tensor | dict:
    """A batch (a tensor, or a nested dict of tensors such as NeRF views) on ``device``, copied asynchronously."""
    move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    return tree_map(move, batch) if isinstance(batch, Mapping) else move(batch)


def batch_size(batch: torch.Tensor | Mapping) -> int:
    """The leading dimension of a batch (a tensor or a dict of tensors)."""
    return (leaves(batch)[0] if isinstance(batch, Mapping) else batch).shape[0]


def batch_slice(batch: torch.Tensor | Mapping, start: int, stop: int) -> torch.Tensor | dict:
    """Instances ``start .. stop - 1`` of a batch (a tensor or a dict of tensors)."""
    cut = lambda t: t[start:stop]  # noqa: E731
    return tree_map(cut, batch) if isinstance(batch, Mapping) else cut(batch)
