"""The one ``nn.Module`` in ginr: a thin holder of a params pytree for Accelerate/DDP, optimizers and checkpoints.

Trainable leaves (``requires_grad``) become ``nn.Parameter``s and frozen ones persistent buffers, at the dotted
names of :func:`ginr.pytree.flatten` (``hyponet.layers.1.bias``), so ``state_dict`` keys are the checkpoint keys.
``forward`` computes the training objective with the pure model functions, so DDP sees one forward per step.
"""

from __future__ import annotations

from torch import nn

from ginr.models.base import Model
from ginr.pytree import unflatten


class ParamsModule(nn.Module):
    """Holds ``params`` for ``model``; ``tree()`` gives them back as a pytree of the live parameters."""

    def __init__(self, model: Model, params: dict, objective=None):
        super().__init__()
        self.model = model
        self.objective = objective
        for path, value in _walk(params):
            parent = self
            for part in path[:-1]:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            if value.requires_grad:
                parent.register_parameter(path[-1], nn.Parameter(value.detach().clone()))
            else:
                parent.register_buffer(path[-1], value.detach().clone())

    def tree(self) -> dict:
        """The params pytree (the module's own Parameter and buffer objects, so gradients reach them)."""
        flat = dict(self.named_parameters())
        flat.update(self.named_buffers())
        return unflatten(flat)

    def forward(self, *args, **kwargs):
        """The training objective ``objective(model, params, *args, **kwargs)`` (see :mod:`ginr.train.objective`)."""
        if self.objective is None:
            raise RuntimeError("ParamsModule was built without an objective; call the model functions on tree()")
        return self.objective(self.model, self.tree(), *args, **kwargs)


def _walk(tree: dict, path: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _walk(value, path + (key,))
        else:
            yield path + (key,), value
