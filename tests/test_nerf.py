"""NeRF with the hypernetwork models (fidelity 2.5, 5.6, 9.4): presets and --data.support-views, the support-view
tokenizer in the one HypernetINR, the training objective (rays sampled by epoch, rendering) and evaluation (full
views and the in-training estimate, every instance once)."""

from __future__ import annotations

import dataclasses
import math
import re

import oracles
import pytest
import torch
from accelerate import Accelerator
from torch._dynamo.utils import counters

from ginr import cli, presets, render
from ginr import config as config_lib
from ginr.config import RenderConfig, TransformerConfig
from ginr.data import EvalBatchSampler, eval_dataset, make_loader, train_dataset
from ginr.inference import novel_views
from ginr.models import build
from ginr.nn import tokenizers
from ginr.pytree import batch_size, batch_slice, flatten, leaves, to_device
from ginr.train import objective as objectives
from ginr.train.evaluate import evaluate_config, evaluate_views

# ----------------------------------------------------------------------------------------------------------------------
# Presets (fidelity 9.4) and --data.support-views
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("views", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("data, repeat, epochs", [("cars", 2, 1000), ("chairs", 1, 1000), ("lamps", 3, 400)])
@pytest.mark.parametrize("model_name", ["ipc-transinr", "transinr"])
def test_nerf_presets(model_name, data, repeat, epochs, views):
    config = presets.resolve(model_name, f"shapenet-{data}", views)
    model = build(model_name, config.model)
    hyponet = config.model.hyponet
    assert (hyponet.n_layer, hyponet.hidden_dim, hyponet.input_dim, hyponet.output_dim) == (6, (256,), 3, 4)
    assert hyponet.output_bias == 0.0 and hyponet.normalize_weight
    fourier = hyponet.fourier
    assert (fourier.type, fourier.sigma, fourier.dim) == ("deterministic_transinr_nerf", 8, 60)
    tokenizer = config.model.tokenizer
    assert (tokenizer.type, tokenizer.patch_size, tokenizer.padding, tokenizer.n_tokens) == (
        "nerf_views",
        8,
        0,
        256 * views,
    )
    assert config.model.transformer.embed_dim == 768  # quirk 18 fixed for transinr chairs with 5 views
    model.check_signal((views, 128, 128), 3)
    if model_name == "ipc-transinr":
        assert (config.model.n_weight_tokens, config.model.modulated_layers, model.n_weight_tokens) == (
            (256,),
            (1,),
            256,
        )
    else:
        assert (config.model.n_weight_tokens, config.model.modulated_layers, model.n_weight_tokens) == (
            (32,),
            None,
            164,
        )
    train = config.train
    assert (train.batch_size, train.epochs, train.eval_every, train.checkpoint_every, train.image_every) == (
        32, epochs, 20, 100, 100
    )  # fmt: skip
    assert config.optim.lr == 1e-4 and config.optim.min_lr is None
    assert (config.data.support_views, config.data.query_views, config.data.train_repeat) == (views, 1, repeat)
    render_config = config.render
    assert (render_config.points_per_ray, render_config.train_rays, render_config.foreground_first_epochs) == (
        128,
        128,
        2,
    )
    assert (render_config.jitter, render_config.eval_rays, render_config.chunk_rays) == (True, 128, 1024)


def test_ipc_transinr_nerf_parameter_count():
    """Fidelity 2.1 [verified]: NeRF LR 43.923 M, counting the reference's dead 256 x 256 base rows of layer 1 and the
    60 frozen frequencies."""
    config = presets.resolve("ipc-transinr", "shapenet-cars")
    params = build("ipc-transinr", config.model).init(torch.Generator().manual_seed(0))
    total = sum(t.numel() for t in leaves(params))
    assert round((total + 256 * 256) / 1e6, 3) == 43.923
    assert params["tokens"]["linear"]["weight"].shape == (768, 576)
    assert params["hyponet"]["fourier"]["frequencies"].shape == (20,)
    assert params["hyponet"]["layers"]["0"]["weight"].shape == (120, 256)
    assert params["hyponet"]["layers"]["5"]["weight"].shape == (256, 4)


@pytest.mark.parametrize("flag", [["--data.support-views", "3"], ["--data.support-views=3"]])
def test_support_views_flag_sets_the_token_count(flag):
    config, _ = cli.parse_train_args(["--model", "transinr", "--data", "shapenet-chairs", *flag], console=False)
    assert config.data.support_views == 3 and config.model.tokenizer.n_tokens == 768


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "celeba178", "--model", "ipc-transinr", "--data.support-views", "2"], "applies to the novel-view"),
        (["--data", "shapenet-cars", "--model", "ipc-transinr", "--data.support-views", "0"], "must be >= 1"),
        (
            ["--data", "shapenet-cars", "--model", "ipc-transinr", "--model.tokenizer.n-tokens", "300"],
            "1 support view\\(s\\) of 128x128 px give 256 tokens with this patch size: set --model.tokenizer.n-tokens 256",
        ),
        (["--data", "shapenet-cars", "--model", "ipc-meta"], "no preset for --model ipc-meta --data shapenet-cars"),
        (["--model", "ipc-transinr", "--data", "photos", "--data.source", "shapenet"], "go together"),
        (["--data", "shapenet-cars", "--model", "transinr", "--render.train-rays", "0"], "--render.train-rays=0"),
        (["--data", "shapenet-lamps", "--model", "transinr", "--data.skip-bad-files"], "not to shapenet's views"),
    ],
)
def test_bad_nerf_flags_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_train_args(argv, console=False)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_resume_refuses_other_support_views(tmp_path, capsys):
    (tmp_path / "config.json").write_text(config_lib.dumps(presets.resolve("ipc-transinr", "shapenet-cars", 2)))
    config, resume = cli.parse_train_args(["--resume", str(tmp_path), "--data.support-views", "2"], console=False)
    assert resume == tmp_path and config.model.tokenizer.n_tokens == 512
    with pytest.raises(SystemExit):
        cli.parse_train_args(["--resume", str(tmp_path), "--data.support-views", "3"], console=False)
    assert "--data.support-views 3 differs from the resumed run's 2" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# A tiny NeRF on the generated spheres
# ----------------------------------------------------------------------------------------------------------------------


def tiny_config(folder, views: int = 2, **render_changes):
    config = presets.resolve("ipc-transinr", "shapenet-cars", views)
    model = dataclasses.replace(
        config.model,
        tokenizer=dataclasses.replace(config.model.tokenizer, n_tokens=4 * views),
        transformer=TransformerConfig(embed_dim=32, n_layer=1, n_head=2, resid_dropout=0.0),
        n_weight_tokens=(8,),
        hyponet=dataclasses.replace(
            config.model.hyponet, hidden_dim=(16,), fourier=dataclasses.replace(config.model.hyponet.fourier, dim=6)
        ),
    )
    data = dataclasses.replace(config.data, path=str(folder), resolution=16, train_views=6, eval_draws=3, num_workers=0)
    render_config = RenderConfig(points_per_ray=8, train_rays=32, chunk_rays=50, eval_rays=16, **render_changes)
    return dataclasses.replace(config, model=model, data=data, render=render_config)


@pytest.fixture(scope="module")
def tiny(shapenet_folder):
    config = tiny_config(shapenet_folder)
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    batch = torch.utils.data.default_collate([train_dataset(config.data)[(i, i)] for i in range(3)])
    return config, model, params, batch


def test_the_support_views_tokenizer_is_view_tokens(tiny):
    config, model, params, batch = tiny
    tokenizer = config.model.tokenizer
    support = batch["support"]
    tokens = tokenizers.tokenize(tokenizer, support)
    assert torch.equal(tokens, render.view_tokens(support["images"], support["poses"], support["focals"], 8))
    assert tokens.shape == (3, 8, 576) and tokenizers.token_dim(tokenizer, 4) == 576
    assert tokenizers.layout(support) == ((2, 16, 16), 3)
    assert tokenizers.n_tokens(tokenizer, (5, 128, 128)) == 1280
    with pytest.raises(ValueError, match="--model.tokenizer.padding 0"):
        tokenizers.n_tokens(dataclasses.replace(tokenizer, padding=1), (1, 16, 16))
    with pytest.raises(ValueError, match="reads support views"):
        tokenizers.tokenize(tokenizer, support["images"])


def test_encode_reads_support_views_and_refuses_another_count(tiny):
    config, model, params, batch = tiny
    encoding = model.encode(params, batch["support"], None, training=False)
    assert encoding.modulation["1"].shape == (3, 16, 8)  # A: (B, fan-in, G)
    one_view = batch_slice(batch["support"], 0, 3)
    one_view = {k: v[:, :1] for k, v in one_view.items()}
    with pytest.raises(ValueError, match="1 support view\\(s\\) of 16x16 px give 4 tokens.*n-tokens 4"):
        model.encode(params, one_view, None, training=False)
    bad = dataclasses.replace(config.model, hyponet=dataclasses.replace(config.model.hyponet, output_dim=3))
    with pytest.raises(ValueError, match="--model.hyponet.output-dim 4"):
        build("ipc-transinr", bad).check_signal((2, 16, 16), 3)


def naive_objective(model, params, batch, index, n_points, depth_range):
    """Per object and ray: the pinhole ray of the chosen query pixel, points o + d z over linspace(near, far), the
    field at them, the loop compositing of test_render, the MSE against the pixel."""

    modulation = model.encode(params, batch["support"], None, training=True).modulation
    query = batch["query"]
    height, width = query["images"].shape[2:4]
    z = torch.linspace(*depth_range, n_points)
    losses = []
    for b in range(index.shape[0]):
        pose, (fx, fy) = query["poses"][b, 0], query["focals"][b, 0].tolist()
        colours, targets = [], []
        for ray in index[b].tolist():
            r, c = divmod(ray, width)
            d = pose[:, :3] @ torch.tensor([(c + 0.5 - width / 2) / fx, -(r + 0.5 - height / 2) / fy, -1.0])
            pts = pose[:, 3] + z[:, None] * d
            one = {name: value[b : b + 1] for name, value in modulation.items()}
            raw = model.decode(params, one, pts[None])[0]
            colours.append(oracles.volume_composite(raw[None].detach(), z[None])[0])
            targets.append(query["images"][b, 0, r, c])
        losses.append((torch.stack(colours) - torch.stack(targets).double()).square().mean())
    return torch.stack(losses)


def test_views_objective_matches_a_per_ray_loop(tiny, monkeypatch):
    config, model, params, batch = tiny
    config = dataclasses.replace(config, render=dataclasses.replace(config.render, jitter=False))
    index = torch.stack([torch.randperm(256, generator=torch.Generator().manual_seed(b))[:32] for b in range(3)])
    monkeypatch.setattr(render, "random_rays", lambda n, count, b, device=None: index)
    out = objectives.objective_for(config)(model, params, batch, epoch=2)
    expected = naive_objective(model, params, batch, index, 8, (2.0, 6.0))
    assert torch.allclose(out["mse"].double(), expected, rtol=1e-4)
    assert torch.allclose(out["loss"], out["mse"].mean()) and out["loss"].requires_grad
    assert torch.allclose(out["psnr"], -10 * torch.log10(out["mse"]))


def test_compiled_views_objective_equals_the_plain_one(tiny, monkeypatch):
    """--train.compile on a NeRF run: the compiled objective (encode, ray gather, rendering, loss) gives the plain
    one's loss and gradients (rays fixed and no jitter, since compiled kernels draw random numbers their own way)."""
    config, model, params, batch = tiny
    config = dataclasses.replace(config, render=dataclasses.replace(config.render, jitter=False))
    index = torch.stack([torch.randperm(256, generator=torch.Generator().manual_seed(b))[:32] for b in range(3)])
    monkeypatch.setattr(render, "random_rays", lambda n, count, b, device=None: index)
    trainable = [leaf for leaf in flatten(params).values() if leaf.requires_grad]
    results = []
    for mode in ("off", "default"):
        loss = objectives.objective_for(config, mode)(model, params, batch, epoch=2)["loss"]
        results.append((loss, torch.cat([g.flatten() for g in torch.autograd.grad(loss, trainable)])))
    (loss, grads), (compiled_loss, compiled_grads) = results
    assert torch.allclose(loss, compiled_loss, rtol=1e-5, atol=0)
    assert (grads - compiled_grads).norm() <= 1e-5 * grads.norm() and grads.norm() > 0


def test_a_compiled_views_objective_compiles_once_per_ray_phase_not_per_epoch(tiny, monkeypatch):
    """torch.compile specialises on Python ints: were the epoch passed into the compiled function, every epoch would
    recompile it, and after 8 torch.compile falls back to eager. Two phases (foreground first, then uniform): the
    graphs traced by epoch 3 are all there are at epoch 11 (traced with the 'eager' backend, to be quick)."""
    config, model, params, batch = tiny
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda f, **kwargs: compile_(f, **{**kwargs, "backend": "eager"}))
    torch._dynamo.reset()
    counters.clear()
    objective = objectives.objective_for(config, "default")
    graphs = []
    for epoch in range(12):
        objective(model, params, batch, epoch=epoch)
        graphs.append(counters["stats"]["unique_graphs"])
    assert config.render.foreground_first_epochs == 2 and graphs[1] > 0
    assert graphs[3] == graphs[11]
    torch._dynamo.reset()


def test_foreground_first_rays_in_the_first_epochs_only(tiny, monkeypatch):
    """Quirk 14: epochs 0 and 1 (foreground_first_epochs 2) sample foreground first, later epochs uniformly."""
    config, model, params, batch = tiny
    calls = []
    foreground_first = render.foreground_first_rays
    monkeypatch.setattr(render, "foreground_first_rays", lambda *a: calls.append(epoch) or foreground_first(*a))
    objective = objectives.objective_for(config)
    for epoch in range(4):
        objective(model, params, batch, epoch=epoch)
    assert calls == [0, 1]
    none = dataclasses.replace(config, render=dataclasses.replace(config.render, foreground_first_epochs=0))
    calls.clear()
    objectives.objective_for(none)(model, params, batch, epoch=0)
    assert calls == []


def test_sample_rays_gathers_matching_origins_directions_and_pixels(tiny):
    _, _, _, batch = tiny
    torch.manual_seed(0)
    origins, directions, pixels = objectives.sample_rays(batch["query"], 40, True, "--render.train-rays")
    assert origins.shape == directions.shape == pixels.shape == (3, 40, 3)
    assert (pixels[:, :20] < 1).any(dim=-1).all()  # the first half is foreground
    all_o, all_d = render.rays(batch["query"]["poses"], batch["query"]["focals"], 16, 16)
    for b in range(3):
        for k in range(40):
            match = (all_d[b, 0].reshape(-1, 3) == directions[b, k]).all(dim=-1)
            assert match.any()
            ray = int(torch.nonzero(match)[0])
            assert torch.equal(batch["query"]["images"][b, 0].reshape(-1, 3)[ray], pixels[b, k])
            assert torch.equal(all_o[b, 0].reshape(-1, 3)[ray], origins[b, k])
    with pytest.raises(ValueError, match="--render.train-rays=300 is more than the 256 pixels"):
        objectives.sample_rays(batch["query"], 300, False, "--render.train-rays")


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation (fidelity 5.6; quirks 11, 19, 24)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def loader(dataset, batch: int, processes: int = 1, rank: int = 0):
    return make_loader(dataset, EvalBatchSampler(len(dataset), batch, processes, rank), 0)


def test_full_evaluation_is_the_mean_of_per_instance_psnrs_of_full_renders(tiny, accelerator):
    config, model, params, _ = tiny
    dataset = eval_dataset(config.data)
    result = evaluate_config(config, model, params, loader(dataset, 4), accelerator=accelerator)
    assert result.metrics["count"] == len(dataset) == 6
    psnrs = []
    for i in range(len(dataset)):
        item = torch.utils.data.default_collate([dataset[i]])
        query = item["query"]
        pred = novel_views(
            model, params, item["support"], query["poses"], query["focals"], (16, 16), config.render, (2.0, 6.0)
        )
        psnrs.append(float(-10 * torch.log10((pred - query["images"]).square().mean())))
    assert math.isclose(result.metrics["psnr"], sum(psnrs) / len(psnrs), rel_tol=1e-5)
    assert set(result.metrics) == {"mse", "psnr", "ssim", "count"}
    assert result.images["views"].shape == (3, 4 * 18 + 2, 4 * 18 + 2)  # 4 objects x (2 support, truth, render)
    assert "object  query view  psnr" in result.text["view_psnr"]


def test_every_instance_counts_once_whatever_the_batch_and_process_count(tiny, accelerator):
    """Two shards (as two processes would take them) hold every instance once; their sums make the whole."""
    config, model, params, _ = tiny
    dataset = eval_dataset(config.data)
    whole = evaluate_config(config, model, params, loader(dataset, 6), accelerator=accelerator).metrics
    assert evaluate_config(config, model, params, loader(dataset, 1), accelerator=accelerator).metrics == pytest.approx(
        whole, rel=1e-6
    )
    shards = [
        evaluate_config(config, model, params, loader(dataset, 2, 2, rank), accelerator=accelerator).metrics
        for rank in (0, 1)
    ]
    assert [shard["count"] for shard in shards] == [3, 3]
    assert sum(shard["psnr"] * shard["count"] for shard in shards) / 6 == pytest.approx(whole["psnr"], rel=1e-6)


def test_the_in_training_estimate_is_named_as_such(tiny, accelerator):
    config, model, params, _ = tiny
    dataset = eval_dataset(config.data)
    estimate = evaluate_config(config, model, params, loader(dataset, 4), accelerator=accelerator, estimate=True)
    assert set(estimate.metrics) == {"mse_estimate", "psnr_estimate", "count"}
    assert "views" in estimate.images  # the logged views are full renders all the same
    full_only = dataclasses.replace(config, render=dataclasses.replace(config.render, eval_rays=None))
    result = evaluate_config(full_only, model, params, loader(dataset, 4), accelerator=accelerator, estimate=True)
    assert "psnr" in result.metrics
    with pytest.raises(ValueError, match="--render.eval-rays"):
        evaluate_views(
            model, params, [], accelerator=accelerator, render_config=full_only.render, depth_range=(2.0, 6.0),
            estimate=True,
        )  # fmt: skip


def test_out_of_memory_falls_back_to_single_objects(tiny, accelerator, monkeypatch):
    config, model, params, _ = tiny
    dataset = eval_dataset(config.data)
    expected = evaluate_config(config, model, params, loader(dataset, 6), accelerator=accelerator).metrics
    encode = model.encode

    def limited(params, support, *args, **kwargs):
        if batch_size(support) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return encode(params, support, *args, **kwargs)

    monkeypatch.setattr(model, "encode", limited)
    result = evaluate_config(config, model, params, loader(dataset, 6), accelerator=accelerator)
    assert result.metrics == pytest.approx(expected, rel=1e-6)


def test_batches_of_dicts_move_and_slice():
    batch = {"support": {"images": torch.zeros(4, 2, 3)}, "query": {"poses": torch.ones(4, 1)}}
    moved = to_device(batch, "cpu")
    assert moved["support"]["images"].shape == (4, 2, 3) and batch_size(moved) == 4
    assert batch_slice(batch, 1, 3)["query"]["poses"].shape == (2, 1)
    assert batch_slice(torch.arange(5), 1, 3).tolist() == [1, 2]
