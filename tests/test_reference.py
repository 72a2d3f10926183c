"""The reference-name mapping (fidelity 1.2, 2.4): names and shapes, outputs, round trips."""

from __future__ import annotations

import math

import oracles
import pytest
import torch
from test_hypernet import CASES

from ginr import presets
from ginr.config import FourierConfig, HyponetConfig
from ginr.models import build
from ginr.pytree import flatten, unflatten
from ginr.reference import from_reference, rules_for


def reference_state(factorized: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A state dict with the reference's names and shapes for the image meta configs (fidelity 1.2, 2.4)."""
    state = {"hyponet.ff_linear": torch.exp(torch.linspace(0, math.log(128), 64))}
    shapes = [(257, 256)] * 4 + [(257, 3)]
    for k, shape in enumerate(shapes):
        state[f"hyponet.params_dict.linear_wb{k}"] = torch.randn(shape, generator=generator) / 16
    layers = [1] if factorized else range(5)
    for k in layers:
        fan_out = shapes[k][1]
        if factorized:
            state[f"factors.init_modulation_factors.linear_wb{k}"] = torch.randn(256, 256, generator=generator)
            state[f"factors.shared_factors.linear_wb{k}"] = torch.randn(256, fan_out, generator=generator) / 256
        else:
            state[f"factors.init_modulation_factors.linear_wb{k}"] = torch.randn(256, fan_out, generator=generator) / 16
    return state


REFERENCE_HYPONET = HyponetConfig(fourier=FourierConfig(sigma=128, dim=128))
"""The image meta configs' hyponet (fidelity 1.1, 9.3): 5 ReLU layers of width 256, 64 frequencies per axis, output bias
0.5, every layer normalised."""


def naive_reference_forward(state, coords, factorized):
    """Fidelity 1.5 with V = V0 (no inner step), the reference's tensors placed by hand: each ``linear_wb{k}`` split
    into its weight rows and its bias row, a modulated layer's weight ``V0 U`` (or ``V0``)."""
    layers, weights = {}, {}
    for k in range(REFERENCE_HYPONET.n_layer):
        matrix = state[f"hyponet.params_dict.linear_wb{k}"]
        layers[str(k)] = {"weight": matrix[:-1], "bias": matrix[-1]}
        key = f"factors.init_modulation_factors.linear_wb{k}"
        if key in state:
            weights[k] = state[key] @ state[f"factors.shared_factors.linear_wb{k}"] if factorized else state[key]
    params = {"fourier": {"frequencies": state["hyponet.ff_linear"]}, "layers": layers}
    return oracles.hyponet(params, REFERENCE_HYPONET, coords, weights)


@pytest.mark.parametrize("model_name", ["ipc-meta", "learned-init"])
def test_import_gives_the_reference_outputs(model_name):
    config = presets.resolve(model_name, "imagenette178")
    model = build(model_name, config.model)
    state = reference_state(config.model.factorized, torch.Generator().manual_seed(0))
    flat = from_reference(state, model)
    assert flat.keys() == flatten(model.init(None)).keys()
    params = unflatten(flat)
    coords = torch.rand(50, 2) * 2 - 1
    factors = {k: v[None] for k, v in params["factors"]["init"].items()}
    ours = model.decode(params, factors, coords)[0]
    assert torch.allclose(ours, naive_reference_forward(state, coords, config.model.factorized), rtol=1e-5, atol=1e-6)


def reference_layout(model, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors under every name and shape the reference's state dict has for ``model``."""
    return {rule.reference: torch.randn(rule.shape, generator=generator) for rule in rules_for(model)}


@pytest.mark.parametrize("model_name", ["ipc-meta", "learned-init"])
def test_import_fills_every_param_and_drops_only_the_dead_rows(model_name):
    config = presets.resolve(model_name, "ffhq256")
    model = build(model_name, config.model)
    expected = flatten(model.init(torch.Generator().manual_seed(1)))
    state = reference_layout(model, torch.Generator().manual_seed(2))
    flat = from_reference(state, model)
    assert flat.keys() == expected.keys()
    assert all(flat[k].shape == v.shape for k, v in expected.items())
    for k in range(5):
        matrix = state[f"hyponet.params_dict.linear_wb{k}"]
        assert torch.equal(flat[f"hyponet.layers.{k}.bias"], matrix[-1])
        if k in model.layers:  # the reference's unused base-weight rows of a modulated layer are dropped
            assert f"hyponet.layers.{k}.weight" not in flat
        else:
            assert torch.equal(flat[f"hyponet.layers.{k}.weight"], matrix[:-1])


def test_bad_reference_state_is_named():
    model = build("ipc-meta", presets.resolve("ipc-meta", "imagenette178").model)
    state = reference_state(True, torch.Generator().manual_seed(0))
    state["module.hyponet.params_dict.linear_wb0"] = state.pop("hyponet.params_dict.linear_wb0")  # DataParallel prefix
    assert "hyponet.layers.0.weight" in from_reference(state, model)
    state["hyponet.params_dict.linear_wb4"] = torch.zeros(257, 4)
    state["optimizer"] = torch.zeros(1)
    del state["factors.shared_factors.linear_wb1"]
    with pytest.raises(ValueError) as error:
        from_reference(state, model)
    message = str(error.value)
    assert "missing ['factors.shared_factors.linear_wb1']" in message
    assert "unexpected ['optimizer']" in message
    assert "hyponet.params_dict.linear_wb4: (257, 4) (expected (257, 3))" in message


@pytest.mark.parametrize(
    "model_name, data, millions",
    [("ipc-transinr", "ffhq178", 43.746), ("transinr", "ffhq178", 44.477), ("ipc-transinr", "librispeech1s", 44.452)],
)
def test_hypernet_reference_layout(model_name, data, millions):
    """The reference's names (fidelity 2.1-2.3, 3.1) and its verified parameter counts (dead rows and ff_linear
    included)."""
    model = build(model_name, presets.resolve(model_name, data).model)
    params = flatten(model.init(torch.Generator().manual_seed(0)))
    state = reference_layout(model, torch.Generator().manual_seed(1))
    assert round(sum(v.numel() for v in state.values()) / 1e6, 3) == millions
    block = {"ln1", "ln2", "attn.key", "attn.query", "attn.value", "attn.proj", "mlp.0", "mlp.2"}
    expected = {f"transformer.blocks.{i}.{m}.{p}" for i in range(6) for m in block for p in ("weight", "bias")}
    expected |= {"latent_mapping.pos_emb_latent", "latent_mapping.latent_mapping.weight", "weight_groups.weight_groups"}
    expected |= {"latent_mapping.latent_mapping.bias", "hyponet.ff_linear"}
    expected |= {f"hyponet.params_dict.linear_wb{k}" for k in range(5)}
    for k in model.layers:
        expected |= {f"group_modulation_postfc.linear_wb{k}.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
        if model_name == "ipc-transinr":
            expected.add(f"shared_factor.linear_wb{k}")
    assert set(state) == expected
    if model_name == "ipc-transinr":
        assert state["shared_factor.linear_wb1"].shape == (1, 256, 256)
        assert state["latent_mapping.pos_emb_latent"].shape[0] == 1
    again = from_reference(state, model)
    assert again.keys() == params.keys() and all(again[k].shape == params[k].shape for k in params)


def naive_params_from_reference_names(state: dict, config) -> dict:
    """The reference's tensors placed by hand, from fidelity 2.1-2.2's names, where ``oracles.hypernet`` reads
    them: independent of ``ginr.reference``'s rules."""
    linear = lambda name: {"weight": state[f"{name}.weight"], "bias": state[f"{name}.bias"]}  # noqa: E731
    blocks = {}
    for i in range(config.transformer.n_layer):
        block = f"transformer.blocks.{i}"
        blocks[str(i)] = {
            "ln1": linear(f"{block}.ln1"),
            "ln2": linear(f"{block}.ln2"),
            "attn": {name: linear(f"{block}.attn.{name}") for name in ("query", "key", "value", "proj")},
            "mlp": {"fc1": linear(f"{block}.mlp.0"), "fc2": linear(f"{block}.mlp.2")},
        }
    layers = {}
    for k in range(config.hyponet.n_layer):
        matrix = state[f"hyponet.params_dict.linear_wb{k}"]
        layers[str(k)] = {"weight": matrix[:-1], "bias": matrix[-1]}
    modulated = range(config.hyponet.n_layer) if config.modulated_layers is None else config.modulated_layers
    return {
        "tokens": {
            "position": state["latent_mapping.pos_emb_latent"][0],
            "linear": linear("latent_mapping.latent_mapping"),
        },
        "transformer": {"blocks": blocks},
        "hyponet": {"fourier": {"frequencies": state["hyponet.ff_linear"]}, "layers": layers},
        "weight_tokens": state["weight_groups.weight_groups"],
        "heads": {
            str(k): {
                "norm": linear(f"group_modulation_postfc.linear_wb{k}.0"),
                "linear": linear(f"group_modulation_postfc.linear_wb{k}.1"),
            }
            for k in modulated
        },
        "factors": {
            "shared": {str(k): state[f"shared_factor.linear_wb{k}"][0] for k in modulated if config.factorized}
        },
    }


@pytest.mark.parametrize("case", ["ipc-image", "transinr-image", "ipc-audio-reflect"])
def test_hypernet_import_gives_the_reference_outputs(case):
    """A reference-named state dict of random values (LayerNorms included, so swapping ln1 and ln2, or the query and
    key projections, changes the output) imports to the model the reference computes (fidelity policy: within 1e-5)."""
    config, shape = CASES[case]
    model = build("ipc-transinr" if config.factorized else "transinr", config)
    generator = torch.Generator().manual_seed(0)
    state = {
        rule.reference: torch.randn(rule.shape, generator=generator, dtype=torch.float64) for rule in rules_for(model)
    }
    state["hyponet.ff_linear"] = state["hyponet.ff_linear"].abs()
    params = unflatten(from_reference(state, model))
    signal = torch.rand(2, *shape, config.hyponet.output_dim, generator=generator, dtype=torch.float64)
    coords = torch.rand(20, len(shape), generator=generator, dtype=torch.float64) * 2 - 1
    ours = model.decode(params, model.encode(params, signal, None, training=False).modulation, coords)
    expected = oracles.hypernet(naive_params_from_reference_names(state, config), config, signal, coords)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-8)
