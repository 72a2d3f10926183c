"""ipc-meta and learned-init: instance factors adapted by a few meta-learned SGD steps (fidelity 2.4, 3.3; the paper's
Algorithm 1).

Params::

    {"hyponet": ...,                                   # modulated layers have a bias but no base weight
     "factors": {"init":   {"1": V0 (fi, r)},          # learned initial instance factor
                 "shared": {"1": U  (r, fo)}}}         # shared factor (absent when not factorized)

The instance weight of a modulated layer is ``W_i = V_i U`` (ipc-meta) or ``W_i = V_i`` (learned-init, every layer).
``V_i`` starts at ``V0`` and takes ``n_inner_steps`` steps ``V <- V - inner_lr * s * dL_i/dV`` on the instance's own
per-sample MSE ``L_i`` over its full coordinate grid, with ``s = ||V||_F^2`` per layer when ``normalize_weight``
(not detached, quirk 20). The inner loop is written for one instance and lifted over the batch with ``vmap``; its
gradient comes from ``torch.func.grad``, so the outer backward pass differentiates through it (second order) unless
``first_order`` detaches the inner gradient.
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, vmap

from ginr import metrics, rules
from ginr.config import MetaINRConfig
from ginr.models.base import Encoding
from ginr.models.modulated import ModulatedHyponet
from ginr.nn import hyponet
from ginr.pytree import tree_map


class MetaINR:
    """ipc-meta (``factorized=True``) and learned-init (``factorized=False``, every layer modulated)."""

    def __init__(self, config: MetaINRConfig):
        rules.check_model(config)
        self.config = config
        fan_outs = [fan_out for _, fan_out in hyponet.layer_shapes(config.hyponet)]
        n_layer = config.hyponet.n_layer
        layers = tuple(range(n_layer)) if config.modulated_layers is None else tuple(sorted(config.modulated_layers))
        self.modulated = ModulatedHyponet(
            config.hyponet, layers, "factorized" if config.factorized else "full", config.vmap_chunk_size
        )
        ranks = rules.layer_values(config.rank, config.modulated_layers, fan_outs) if config.factorized else {}
        self.ranks = {str(k): rank for k, rank in ranks.items()}

    @property
    def layers(self) -> tuple[int, ...]:
        return self.modulated.layers

    def check_signal(self, shape: tuple[int, ...], channels: int) -> None:
        """Refuse data whose dimension or channels the hyponet does not produce (:func:`ginr.rules.check_signal`)."""
        rules.check_signal(self.config, shape, channels)

    @property
    def names(self) -> tuple[str, ...]:
        return self.modulated.names

    # ---- params -------------------------------------------------------------------------------------------------

    def init(self, generator: torch.Generator | None) -> dict:
        """Hyponet first, then per modulated layer V0 then U (fidelity 10): V0 ~ N(0, 1) (fi, r) and U ~ N(0, 1/(r fi))
        (r, fo) when factorized; V0 ~ N(0, 1/fi) (fi, fo) when not."""
        config = self.config
        params = {
            "hyponet": hyponet.init(config.hyponet, generator, weightless_layers=self.modulated.weightless_layers)
        }
        shapes = hyponet.layer_shapes(config.hyponet)
        init, shared = {}, {}
        for k, name in zip(self.layers, self.names):
            fan_in, fan_out = shapes[k]
            if config.factorized:
                rank = self.ranks[name]
                init[name] = torch.randn(fan_in, rank, generator=generator)
                shared[name] = torch.randn(rank, fan_out, generator=generator) / math.sqrt(rank * fan_in)
            else:
                init[name] = torch.randn(fan_in, fan_out, generator=generator) / math.sqrt(fan_in)
        factors = {"init": init, **({"shared": shared} if config.factorized else {})}
        params["factors"] = tree_map(torch.Tensor.requires_grad_, factors)
        return params

    # ---- one instance -------------------------------------------------------------------------------------------

    def adapt(
        self,
        params: dict,
        hidden: torch.Tensor,
        target: torch.Tensor,
        n_steps: int,
        first_order: bool,
        keep_trajectory: bool = False,
    ):
        """The inner loop for one instance: ``n_steps`` SGD steps on ``V`` from ``V0`` (Algorithm 1, fidelity 2.4).

        ``hidden`` is the shared prefix output on the instance's full grid. Returns the adapted factors, the MSE
        before each step (n_steps,) and the factors before each step and after the last (an empty list unless
        ``keep_trajectory``).
        """
        config = self.config

        def inner_loss(factors):
            loss = metrics.mse(self.modulated.decode_hidden(params, factors, hidden), target)
            return loss, loss.detach()

        factors = dict(params["factors"]["init"])
        trajectory = [factors]
        losses = []
        for _ in range(n_steps):
            grads, mse = grad(inner_loss, has_aux=True)(factors)
            losses.append(mse)
            if first_order:
                grads = tree_map(torch.detach, grads)
            factors = {
                name: v - config.inner_lr * self.inner_lr_scale(v) * grads[name].to(v.dtype)
                for name, v in factors.items()
            }
            trajectory.append(factors)
        losses = torch.stack(losses) if losses else hidden.new_zeros(0)
        return factors, losses, (trajectory if keep_trajectory else [])

    def inner_lr_scale(self, factor: torch.Tensor) -> torch.Tensor | float:
        """The factor of the inner learning rate for a modulation ``factor``: ``||V||_F^2`` with normalize_weight (kept
        in the graph, quirk 20), else 1. A model of your own that modulates something a norm does not suit (a zero
        initial bias shift would never move) overrides it."""
        return factor.square().sum() if self.config.hyponet.normalize_weight else 1.0

    # ---- the batch ----------------------------------------------------------------------------------------------

    def encode(
        self,
        params: dict,
        signal: torch.Tensor,
        coords: torch.Tensor,
        *,
        training: bool,
        n_steps: int | None = None,
        keep_trajectory: bool = False,
    ) -> Encoding:
        """Adapt every instance of ``signal`` (B, *S, C) on its full grid ``coords`` (*S, D).

        ``training`` selects ``n_inner_steps`` (else ``eval_inner_steps``) unless ``n_steps`` is given; the outer graph
        exists only where autograd is enabled by the caller, so evaluation under ``torch.no_grad`` builds none.
        """
        config = self.config
        if n_steps is None:
            n_steps = config.n_inner_steps if training or config.eval_inner_steps is None else config.eval_inner_steps
        target = signal.flatten(1, -2)
        hidden = self.modulated.prefix(params, coords.flatten(0, -2))
        adapt = vmap(
            lambda t: self.adapt(params, hidden, t, n_steps, config.first_order, keep_trajectory),
            chunk_size=config.vmap_chunk_size,
        )
        factors, inner_mse, trajectory = adapt(target)
        return Encoding(modulation=factors, inner_mse=inner_mse, trajectory=trajectory or None)

    def decode(self, params: dict, modulation: dict, coords: torch.Tensor) -> torch.Tensor:
        """Values (B, N, C) at ``coords`` (N, D) shared by the batch or (B, N, D) (see :class:`ModulatedHyponet`)."""
        return self.modulated.decode(params, modulation, coords)
