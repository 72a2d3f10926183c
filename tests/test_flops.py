"""ginr.train.flops: counting a step's FLOPs (on fake tensors), the cached matmul ceiling, utilisation."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from conftest import tiny_meta_config

from ginr.models import build
from ginr.pytree import flatten
from ginr.train import flops
from ginr.train.objective import objective_for


def test_flop_count_includes_attention():
    """Attention is 2 L^2 d multiply-adds per head (scores and mix); the counter must see them on a CPU too."""
    batch, heads, length, dim = 2, 3, 10, 8
    q, k, v = (torch.randn(batch, heads, length, dim) for _ in range(3))
    count = flops.count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert count == 2 * batch * heads * 2 * length * length * dim


def test_step_flops_on_fake_tensors_match_the_real_count_and_change_nothing():
    config = tiny_meta_config(16, 8, 16)
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    objective = objective_for(config)
    batch = torch.rand(2, 8, 8, 3)
    trainable = [leaf for leaf in flatten(params).values() if leaf.requires_grad]

    def real_step():
        torch.autograd.grad(objective(model, params, batch, epoch=0)["loss"], trainable, allow_unused=True)

    random_state = torch.get_rng_state()
    counted = flops.step_flops(model, params, objective, batch)
    assert torch.equal(torch.get_rng_state(), random_state)  # the run's random streams go on as if not counted
    assert all(leaf.grad is None for leaf in trainable)
    assert counted == flops.count_flops(real_step) > 0


def test_flops_per_instance_counts_the_first_micro_batch_and_yields_it_again():
    config = tiny_meta_config(16, 8, 16)
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    objective = objective_for(config)
    micro_batches = [torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8, 3)]
    per_instance, batches = flops.per_instance(model, params, objective, iter(micro_batches))
    assert per_instance == flops.step_flops(model, params, objective, micro_batches[0]) / 2
    assert [b is m for b, m in zip(batches, micro_batches, strict=True)] == [True, True]


def test_the_ceiling_is_measured_once_per_device_torch_and_precision(tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(flops, "matmul_ceiling", lambda device, precision: measured.append(precision) or 1e12)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert flops.cache_dir() == tmp_path / "ginr"
    cpu = torch.device("cpu")
    assert flops.cached_matmul_ceiling(cpu, "fp32") == 1e12
    assert flops.cached_matmul_ceiling(cpu, "fp32") == 1e12  # from the cache
    assert measured == ["fp32"]
    flops.cached_matmul_ceiling(cpu, "bf16")
    assert measured == ["fp32", "bf16"]
    (key, _), _ = json.loads((tmp_path / "ginr" / flops.CACHE_FILE).read_text()).items()
    assert flops.device_name(cpu) in key and torch.__version__ in key and key.endswith("fp32")


def test_utilisation_is_achieved_flops_over_the_ceiling():
    assert flops.utilisation(flops_per_instance=2e9, instances_per_s=50.0, ceiling=4e11) == 0.25
