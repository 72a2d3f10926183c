"""The modulated hyponet (ginr.models.modulated): each mode composes an instance's weights as its docstring says, and
the batched decode is the hyponet run once per instance with those weights."""

from __future__ import annotations

import pytest
import torch

from ginr.config import FourierConfig, HyponetConfig
from ginr.models.modulated import ModulatedHyponet
from ginr.nn import hyponet

CONFIG = HyponetConfig(n_layer=3, hidden_dim=(6,), output_dim=2, fourier=FourierConfig(dim=4, sigma=4.0))
FAN_IN, FAN_OUT = 6, 6  # layer 1


def params_and_factors(mode: str, batch: int = 3, rank: int = 2):
    """Params of the hyponet (with the shared factor U when ``factorized``) and a batch of layer 1's instance factors."""
    generator = torch.Generator().manual_seed(0)
    modulated = ModulatedHyponet(CONFIG, (1,), mode)
    params = {"hyponet": hyponet.init(CONFIG, generator, weightless_layers=modulated.weightless_layers)}
    columns = {"factorized": rank, "full": FAN_OUT, "tiled": rank}[mode]
    if mode == "factorized":
        params["factors"] = {"shared": {"1": torch.randn(rank, FAN_OUT, generator=generator)}}
    factors = {"1": torch.randn(batch, FAN_IN, columns, generator=generator)}
    return modulated, params, factors


@pytest.mark.parametrize("mode", ["factorized", "full", "tiled"])
def test_each_mode_composes_the_weight_its_docstring_gives(mode):
    modulated, params, factors = params_and_factors(mode)
    factor = factors["1"][0]
    weight = modulated.compose(params, {"1": factor})["1"]
    if mode == "factorized":
        expected = factor @ params["factors"]["shared"]["1"]
    elif mode == "full":
        expected = factor
    else:  # column j of the base weight scaled by group j mod G
        base = params["hyponet"]["layers"]["1"]["weight"]
        expected = torch.stack([base[:, j] * factor[:, j % factor.shape[1]] for j in range(FAN_OUT)], 1)
    torch.testing.assert_close(weight, expected)
    assert ("weight" in params["hyponet"]["layers"]["1"]) == (mode == "tiled")  # a replaced weight is not allocated


@pytest.mark.parametrize("mode", ["factorized", "full", "tiled"])
def test_decode_is_the_hyponet_run_per_instance_with_the_composed_weights(mode):
    modulated, params, factors = params_and_factors(mode)
    coords = torch.rand(5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = torch.stack(
        [
            hyponet.forward(params["hyponet"], CONFIG, coords, modulated.compose(params, {"1": factors["1"][i]}))
            for i in range(3)
        ]
    )
    torch.testing.assert_close(modulated.decode(params, factors, coords), expected)  # shared coordinates
    per_instance = coords.expand(3, -1, -1)
    torch.testing.assert_close(modulated.decode(params, factors, per_instance), expected)
    chunked = ModulatedHyponet(CONFIG, (1,), mode, chunk_size=2)
    torch.testing.assert_close(chunked.decode(params, factors, coords), expected)


def test_an_unknown_mode_is_refused():
    with pytest.raises(
        ValueError, match=r"ModulatedHyponet mode 'shift': choose one of \('factorized', 'full', 'tiled'\)"
    ):
        ModulatedHyponet(CONFIG, (1,), "shift")
