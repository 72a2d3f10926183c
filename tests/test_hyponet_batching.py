"""How the hyponet batches (fidelity 1.5): the forward pass split into a prefix shared by every instance and a
per-instance suffix, vmap over instances against a loop, and any leading coordinate dims, each against
``oracles.hyponet``."""

from __future__ import annotations

import oracles
import pytest
import torch
from test_hyponet import CONFIGS, assert_close, grads, make_coords, make_params, make_weights

from ginr.nn import hyponet
from ginr.pytree import leaves


@pytest.mark.parametrize("name", ["image_sigma64", "nerf", "siren", "no_bias", "hidden_list"])
def test_prefix_suffix_equals_forward(name):
    cfg = CONFIGS[name]
    params = make_params(cfg)
    coords = make_coords(cfg, shape=(3, 8))
    # modulated layer m: every split point k <= m
    for m in (1, 2):
        weights = make_weights(cfg, (m,))
        full = hyponet.forward(params, cfg, coords, weights)
        for k in range(m + 1):
            hidden = hyponet.forward_prefix(params, cfg, coords, k)
            split = hyponet.forward_suffix(params, cfg, hidden, weights, k)
            assert torch.allclose(split, full, rtol=0, atol=1e-13), (m, k)
    # no modulation: every split point, including after the last layer
    full = hyponet.forward(params, cfg, coords)
    assert torch.allclose(full, oracles.hyponet(params, cfg, coords, {}), rtol=1e-10, atol=1e-10)
    for k in range(cfg.n_layer + 1):
        hidden = hyponet.forward_prefix(params, cfg, coords, k)
        split = hyponet.forward_suffix(params, cfg, hidden, {}, k)
        assert torch.allclose(split, full, rtol=0, atol=1e-13), k
    # the prefix's width is the next layer's fan-in
    shapes = hyponet.layer_shapes(cfg)
    for k in range(cfg.n_layer):
        assert hyponet.forward_prefix(params, cfg, coords, k).shape == (3, 8, shapes[k][0])


def test_prefix_is_shared_across_instances():
    """One prefix computed once, then per-instance suffixes, equals per-instance full forwards."""
    cfg = CONFIGS["image_sigma64"]
    params = make_params(cfg)
    coords = make_coords(cfg)
    batched = make_weights(cfg, (1,), batch=(4,))["1"]
    hidden = hyponet.forward_prefix(params, cfg, coords, 1)
    out = torch.func.vmap(lambda w: hyponet.forward_suffix(params, cfg, hidden, {"1": w}, 1))(batched)
    for i in range(4):
        assert torch.allclose(out[i], oracles.hyponet(params, cfg, coords, {1: batched[i]}), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["image_sigma64", "nerf", "audio", "siren_unnormalised"])
def test_vmap_over_instances_equals_loop(name):
    cfg = CONFIGS[name]
    params = make_params(cfg)
    n_inst = 3
    coords = make_coords(cfg, shape=(n_inst, 16))
    weights = make_weights(cfg, (1, 2), batch=(n_inst,))

    def one(c, w1, w2):
        return hyponet.forward(params, cfg, c, {"1": w1, "2": w2})

    out = torch.func.vmap(one)(coords, weights["1"], weights["2"])
    loop = torch.stack([one(coords[i], weights["1"][i], weights["2"][i]) for i in range(n_inst)])
    refs = torch.stack(
        [oracles.hyponet(params, cfg, coords[i], {1: weights["1"][i], 2: weights["2"][i]}) for i in range(n_inst)]
    )
    assert out.shape == (n_inst, 16, cfg.output_dim)
    assert torch.allclose(out, loop, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out, refs, rtol=1e-10, atol=1e-10)
    # gradients through vmap == through the loop
    inputs = [t for t in leaves(params) if t.requires_grad] + [weights["1"], weights["2"]]
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype)
    for a, b in zip(grads(out, cot, inputs), grads(refs, cot, inputs)):
        assert_close(a, b, rtol=1e-10, atol=1e-10)

    # shared coordinates, per-instance weights (in_dims None for coords)
    shared = coords[0]
    out = torch.func.vmap(one, in_dims=(None, 0, 0))(shared, weights["1"], weights["2"])
    loop = torch.stack([one(shared, weights["1"][i], weights["2"][i]) for i in range(n_inst)])
    assert torch.allclose(out, loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (7,), (2, 3, 5), (1, 4, 1, 3)])
@pytest.mark.parametrize("name", ["image_sigma64", "nerf", "audio", "random_gaussian", "siren"])
def test_leading_dims(name, lead):
    cfg = CONFIGS[name]
    params = make_params(cfg)
    coords = make_coords(cfg, shape=lead)
    weights = make_weights(cfg, (1,))
    out = hyponet.forward(params, cfg, coords, weights)
    assert out.shape == (*lead, cfg.output_dim)
    flat = hyponet.forward(params, cfg, coords.reshape(-1, cfg.input_dim), weights)
    assert torch.allclose(out.reshape(-1, cfg.output_dim), flat, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out, oracles.hyponet(params, cfg, coords, {1: weights["1"]}), rtol=1e-10, atol=1e-10)
