"""ipc-meta and learned-init's parameters (fidelity 2.4, 3.3): the factor init distributions, seeding, and the rank and
modulated-layer checks."""

from __future__ import annotations

import math

import pytest
import torch
from test_meta import C, ipc_config, learned_init_config, small_hyponet

from ginr.config import FourierConfig
from ginr.models import build
from ginr.pytree import flatten


def _assert_normal(t: torch.Tensor, std: float) -> None:
    n = t.numel()
    assert abs(t.mean().item()) < 4 * std / math.sqrt(n)
    assert abs(t.std().item() / std - 1) < 0.08


def test_factor_init_distributions():
    hyponet = small_hyponet(hidden_dim=(64,), fourier=FourierConfig(dim=64, sigma=8.0))
    fan_in, fan_out, rank = 64, 64, 32  # layer 2: 64 -> 64
    model = build("ipc-meta", ipc_config(hyponet=hyponet, rank=(rank,), modulated_layers=(2,)))
    params = model.init(torch.Generator().manual_seed(0))
    v0, u = params["factors"]["init"]["2"], params["factors"]["shared"]["2"]
    assert v0.shape == (fan_in, rank) and u.shape == (rank, fan_out)
    assert v0.requires_grad and u.requires_grad and v0.dtype == torch.float32
    _assert_normal(v0, 1.0)
    _assert_normal(u, 1.0 / math.sqrt(rank * fan_in))

    # layer 0 takes the 2 * 64 Fourier features
    first = build("ipc-meta", ipc_config(hyponet=hyponet, rank=(rank,), modulated_layers=(0,)))
    p0 = first.init(torch.Generator().manual_seed(1))
    assert p0["factors"]["init"]["0"].shape == (128, rank)
    _assert_normal(p0["factors"]["shared"]["0"], 1.0 / math.sqrt(rank * 128))

    unfactorized = build("learned-init", learned_init_config(hyponet=hyponet))
    pu = unfactorized.init(torch.Generator().manual_seed(2))
    assert pu["factors"]["init"]["0"].shape == (128, 64)
    _assert_normal(pu["factors"]["init"]["0"], 1.0 / math.sqrt(128))
    _assert_normal(pu["factors"]["init"]["1"], 1.0 / math.sqrt(64))
    assert pu["factors"]["init"]["3"].shape == (64, C)
    assert "shared" not in pu["factors"]


def test_init_is_seeded():
    model = build("ipc-meta", ipc_config())
    a = flatten(model.init(torch.Generator().manual_seed(5)))
    b = flatten(model.init(torch.Generator().manual_seed(5)))
    c = flatten(model.init(torch.Generator().manual_seed(6)))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert not torch.equal(a["factors.init.1"], c["factors.init.1"])


def test_rank_clipping_and_validation():
    # a single (broadcast) rank above a layer's fan-out is clipped per layer
    model = build("ipc-meta", ipc_config(rank=(100,), modulated_layers=(1, 3)))
    params = model.init(torch.Generator().manual_seed(0))
    assert params["factors"]["init"]["1"].shape == (16, 16)
    assert params["factors"]["shared"]["1"].shape == (16, 16)
    assert params["factors"]["init"]["3"].shape == (16, C)
    assert params["factors"]["shared"]["3"].shape == (C, C)
    _assert_normal(params["factors"]["shared"]["1"], 1.0 / math.sqrt(16 * 16))

    # per-layer ranks within the fan-out are kept
    ok = build("ipc-meta", ipc_config(rank=(5, 2), modulated_layers=(1, 3))).init(torch.Generator().manual_seed(0))
    assert ok["factors"]["init"]["1"].shape == (16, 5)
    assert ok["factors"]["init"]["3"].shape == (16, 2)

    # paired in the order --model.modulated-layers names the layers
    assert build("ipc-meta", ipc_config(rank=(2, 5), modulated_layers=(3, 1))).ranks == {"1": 5, "3": 2}
    with pytest.raises(ValueError, match="--model.rank: 4 for layer 3 must be in 1..3"):
        build("ipc-meta", ipc_config(rank=(4, 2), modulated_layers=(3, 1)))
    with pytest.raises(ValueError, match="rank"):
        build("ipc-meta", ipc_config(rank=(4, 4), modulated_layers=(1, 3)))
    with pytest.raises(ValueError, match="rank"):
        build("ipc-meta", ipc_config(rank=(4, 0), modulated_layers=(1, 3)))
    with pytest.raises(ValueError, match="rank"):
        build("ipc-meta", ipc_config(rank=(4, 4, 4), modulated_layers=(1, 3)))
    for layers in [(4,), (-1,), (1, 1), ()]:
        with pytest.raises(ValueError, match="modulated-layers"):
            build("ipc-meta", ipc_config(modulated_layers=layers))
