"""The mapping from the reference's state-dict names and shapes (kakaobrain/ginr-ipc, fidelity 1.2, 2.1-2.4, 3.1, 10.2)
to ginr's params pytree, one way: the reference-checkpoint importer (recipes/import_reference.py) reads reference
checkpoints with it; nothing is exported to the reference's layout.

Reference layout per hyponet layer K: ``hyponet.params_dict.linear_wbK`` of shape (fi + 1, fo), weight rows then the
bias row ((fi, fo) without bias). ginr keeps ``hyponet.layers.K.weight`` (fi, fo) and ``hyponet.layers.K.bias``
(fo,) apart; a modulated layer whose base weight the reference ignores has only the bias in ginr, so its weight rows
(never used, quirk 21) are dropped on import.
"""

from __future__ import annotations

import dataclasses

import torch

from ginr.nn import hyponet, tokenizers


@dataclasses.dataclass(frozen=True)
class NameRule:
    """One reference tensor and the ginr leaves it holds.

    ``whole``: the tensor is the ginr leaf ``weight`` (``squeeze``: minus the reference's leading singleton axis).
    Otherwise a hyponet matrix: rows ``[:-1]`` are ``weight`` (None: dropped) and the last row is ``bias``.
    """

    reference: str
    shape: tuple[int, ...]
    weight: str | None
    bias: str | None = None
    whole: bool = False
    squeeze: bool = False

    def to_ginr(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.whole:
            return {self.weight: tensor[0] if self.squeeze else tensor}
        out = {}
        rows = tensor[:-1] if self.bias else tensor
        if self.weight:
            out[self.weight] = rows
        if self.bias:
            out[self.bias] = tensor[-1]
        return out


def same(reference: str, shape: tuple[int, ...], name: str, squeeze: bool = False) -> NameRule:
    return NameRule(reference, shape, name, whole=True, squeeze=squeeze)


def module_rules(reference: str, name: str, out_features: int, in_features: int | None = None) -> list[NameRule]:
    """An ``nn.Linear`` (weight (out, in)) or, without ``in_features``, an ``nn.LayerNorm``: weight and bias."""
    weight_shape = (out_features,) if in_features is None else (out_features, in_features)
    return [
        same(f"{reference}.weight", weight_shape, f"{name}.weight"),
        same(f"{reference}.bias", (out_features,), f"{name}.bias"),
    ]


def hyponet_rules(config, weightless: set[int], prefix: str = "hyponet") -> list[NameRule]:
    """Rules for a hyponet (``config``: HyponetConfig) whose layers in ``weightless`` have no ginr base weight."""
    rules = []
    if config.fourier.enabled:
        count = config.fourier.dim // config.input_dim
        shape = (config.input_dim, config.fourier.dim) if config.fourier.type == "random_gaussian" else (count,)
        rules.append(same(f"{prefix}.ff_linear", shape, f"{prefix}.fourier.frequencies"))
    for k, (fan_in, fan_out) in enumerate(hyponet.layer_shapes(config)):
        rows = fan_in + (1 if config.use_bias else 0)
        weight = None if k in weightless else f"{prefix}.layers.{k}.weight"
        bias = f"{prefix}.layers.{k}.bias" if config.use_bias else None
        rules.append(NameRule(f"{prefix}.params_dict.linear_wb{k}", (rows, fan_out), weight, bias))
    return rules


def meta_rules(model) -> list[NameRule]:
    """Rules for ipc-meta / learned-init (``model``: a MetaINR): the hyponet, then ``factors.*`` (fidelity 2.4)."""
    config = model.config
    rules = hyponet_rules(config.hyponet, set(model.layers))
    shapes = hyponet.layer_shapes(config.hyponet)
    for k, name in zip(model.layers, model.names):
        fan_in, fan_out = shapes[k]
        width = model.ranks[name] if config.factorized else fan_out
        rules.append(same(f"factors.init_modulation_factors.linear_wb{k}", (fan_in, width), f"factors.init.{name}"))
        if config.factorized:
            rules.append(same(f"factors.shared_factors.linear_wb{k}", (width, fan_out), f"factors.shared.{name}"))
    return rules


def transformer_rules(config, prefix: str = "transformer") -> list[NameRule]:
    """``transformer.blocks.{i}.{ln1, attn.{key, query, value, proj}, ln2, mlp.0, mlp.2}`` (fidelity 2.2)."""
    width, hidden = config.embed_dim, config.mlp_ratio * config.embed_dim
    rules = []
    for i in range(config.n_layer):
        block = f"{prefix}.blocks.{i}"
        rules += module_rules(f"{block}.ln1", f"{block}.ln1", width)
        for name in ("key", "query", "value", "proj"):
            rules += module_rules(f"{block}.attn.{name}", f"{block}.attn.{name}", width, width)
        rules += module_rules(f"{block}.ln2", f"{block}.ln2", width)
        rules += module_rules(f"{block}.mlp.0", f"{block}.mlp.fc1", hidden, width)
        rules += module_rules(f"{block}.mlp.2", f"{block}.mlp.fc2", width, hidden)
    return rules


def hypernet_rules(model) -> list[NameRule]:
    """Rules for ipc-transinr / transinr (``model``: a HypernetINR; fidelity 2.1, 3.1)."""
    config = model.config
    width = config.transformer.embed_dim
    token_dim = tokenizers.token_dim(config.tokenizer, config.hyponet.output_dim)
    rules = [
        same("latent_mapping.pos_emb_latent", (1, config.tokenizer.n_tokens, width), "tokens.position", squeeze=True),
        *module_rules("latent_mapping.latent_mapping", "tokens.linear", width, token_dim),
        *transformer_rules(config.transformer),
        *hyponet_rules(config.hyponet, set(model.modulated.weightless_layers)),
        same("weight_groups.weight_groups", (model.n_weight_tokens, width), "weight_tokens"),
    ]
    shapes = hyponet.layer_shapes(config.hyponet)
    for k in model.layers:
        fan_in, fan_out = shapes[k]
        if config.factorized:
            groups = model.groups[str(k)]
            rules.append(same(f"shared_factor.linear_wb{k}", (1, groups, fan_out), f"factors.shared.{k}", squeeze=True))
        head = f"group_modulation_postfc.linear_wb{k}"
        rules += module_rules(f"{head}.0", f"heads.{k}.norm", width)
        rules += module_rules(f"{head}.1", f"heads.{k}.linear", fan_in, width)
    return rules


def rules_for(model) -> list[NameRule]:
    """The name rules of a built ginr model."""
    from ginr.models.hypernet import HypernetINR
    from ginr.models.meta import MetaINR

    if isinstance(model, MetaINR):
        return meta_rules(model)
    if isinstance(model, HypernetINR):
        return hypernet_rules(model)
    raise TypeError(f"no reference name mapping for {type(model).__name__}")


def from_reference(state_dict: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """A reference state dict -> ginr flat params (``ginr.pytree.unflatten`` makes the pytree).

    Every reference key of the model must be present, a tensor of its exact shape with finite values; keys outside the
    model (the reference's optimizer or EMA entries, or the ``module.`` prefix of a DataParallel wrapper) are refused
    by name.
    """
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    not_tensors = sorted(f"{k} ({type(v).__name__})" for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"the reference state dict holds values that are not tensors: {not_tensors}")
    rules = rules_for(model)
    expected = {rule.reference: rule for rule in rules}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{name}: {tuple(state_dict[name].shape)} (expected {rule.shape})"
        for name, rule in expected.items()
        if name in state_dict and tuple(state_dict[name].shape) != rule.shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            "the reference state dict does not fit this model config: "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"unexpected {unexpected}" if unexpected else "",
                    f"wrong shapes {wrong}" if wrong else "",
                )
                if part
            )
        )
    broken = sorted(name for name in expected if not state_dict[name].float().isfinite().all())
    if broken:
        raise ValueError(f"the reference state dict holds non-finite values (NaN or inf) in {broken}")
    flat = {}
    for rule in rules:
        flat.update(rule.to_ginr(state_dict[rule.reference]))
    return flat
