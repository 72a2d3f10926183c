"""Inference API and the inference recipes: reconstruct, encode, import_reference, push_to_hub (offline)."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from accelerate import Accelerator
from conftest import smooth_image
from huggingface_hub import errors as hub_errors
from PIL import Image
from safetensors.torch import load_file

import ginr
from ginr import inference, metrics, presets
from ginr.config import DataConfig
from ginr.coords import grid
from ginr.data import eval_dataset, signal_transform
from ginr.models import build
from ginr.module import ParamsModule
from ginr.pytree import flatten
from ginr.reference import from_reference, rules_for
from ginr.train import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import encode as encode_recipe  # noqa: E402
import import_reference  # noqa: E402
import push_to_hub  # noqa: E402
import reconstruct  # noqa: E402


def tiny(model_name: str, data: DataConfig, **hyponet) -> ginr.Config:
    config = presets.resolve(model_name, "photos")
    fourier = dataclasses.replace(config.model.hyponet.fourier, dim=8, sigma=4)
    model = config.model
    model = dataclasses.replace(
        model, hyponet=dataclasses.replace(model.hyponet, hidden_dim=(16,), fourier=fourier, **hyponet)
    )
    if model_name in ("ipc-transinr", "transinr"):
        tokenizer = dataclasses.replace(model.tokenizer, patch_size=4, padding=0, n_tokens=4)
        transformer = dataclasses.replace(model.transformer, embed_dim=16, n_layer=1, n_head=2)
        model = dataclasses.replace(model, tokenizer=tokenizer, transformer=transformer, n_weight_tokens=(8,))
        if hyponet.get("input_dim") == 1:
            model = dataclasses.replace(
                model, tokenizer=dataclasses.replace(model.tokenizer, type="audio_patches", patch_size=40)
            )
    else:
        model = dataclasses.replace(model, rank=(16,))
    return dataclasses.replace(config, model=model, data=data)


def saved_model(tmp_path: Path, config: ginr.Config) -> Path:
    params = build(config.model_name, config.model).init(torch.Generator().manual_seed(0))
    return ginr.save_pretrained(tmp_path / "model", config, params)


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    smooth_image(np.random.default_rng(3), 12).save(path)
    return path


def test_decode_at_any_resolution_and_refine(image_file):
    config = tiny("ipc-transinr", DataConfig(resolution=8))
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    modulation = inference.encode(model, params, signal, (-1, 1)).modulation
    assert inference.decode(model, params, modulation, (24, 24), (-1, 1)).shape == (2, 24, 24, 3)
    refined, psnr = inference.refine(model, params, signal, modulation, (-1, 1), steps=20, lr=1e-2)
    assert psnr.shape == (21, 2) and (psnr[-1] > psnr[0] + 0.5).all()  # test-time optimisation fits each instance
    same = inference.decode(model, params, refined, (8, 8), (-1, 1))
    mse = (same - signal).square().flatten(1).mean(1)
    assert torch.allclose(-10 * torch.log10(mse), psnr[-1], atol=1e-4)


def test_decode_is_differentiable_in_the_modulation_only():
    """Downstream work (guidance, latent optimisation) takes gradients through decode, with autograd or torch.func;
    the shared params never enter the graph."""
    config = tiny("ipc-meta", DataConfig(resolution=8))
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))  # leaves that require grad, as from_pretrained's do
    signal = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    modulation = inference.encode(model, params, signal, (-1, 1)).modulation
    assert not inference.decode(model, params, modulation, (8, 8), (-1, 1)).requires_grad  # no graph built

    def loss(m):
        return (inference.decode(model, params, m, (8, 8), (-1, 1)) - signal).square().mean()

    factor = modulation["1"].clone().requires_grad_()  # the plain model's decode on the same grid
    pred = model.decode(params, {"1": factor}, grid((8, 8)).flatten(0, 1)).view_as(signal)
    (expected,) = torch.autograd.grad((pred - signal).square().mean(), [factor])
    assert expected.abs().max() > 0
    torch.testing.assert_close(torch.func.grad(loss)(modulation)["1"], expected)
    leaf = {"1": modulation["1"].clone().requires_grad_()}
    loss(leaf).backward()
    torch.testing.assert_close(leaf["1"].grad, expected)
    assert all(t.grad is None for t in flatten(params).values())


def test_reconstruct_image_writes_the_requested_size(tmp_path, image_file, capsys):
    folder = saved_model(tmp_path, tiny("ipc-meta", DataConfig(resolution=8)))
    out = tmp_path / "out"
    reconstruct.main(reconstruct.Args(model=str(folder), input=str(image_file), scale=3, out=str(out), steps=2))
    printed = capsys.readouterr().out
    assert "photo.png: psnr" in printed
    with Image.open(out / "photo.png_x3.png") as image:
        assert image.size == (24, 24)


@pytest.mark.parametrize("case", ["unreadable file", "scale 0", "scale too small"])
def test_reconstruct_refuses_bad_input_by_name(tmp_path, image_file, capsys, case):
    folder = saved_model(tmp_path, tiny("ipc-meta", DataConfig(resolution=8)))
    args = dict(model=str(folder), input=str(image_file), out=str(tmp_path / "out"))
    if case == "scale 0":
        args["scale"], expected = 0.0, "error: --scale 0.0 must be > 0"
    elif case == "scale too small":
        args["scale"], expected = 0.1, f"error: --scale 0.1 leaves no pixel (or sample) of {image_file}'s"
    else:
        image_file.write_bytes(b"not an image")
        expected = f"error: cannot read {image_file}: UnidentifiedImageError"
    with pytest.raises(SystemExit) as exit_info:
        reconstruct.main(reconstruct.Args(**args))
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_reconstruct_audio_writes_a_wav_at_the_scaled_rate(tmp_path, capsys):
    data = DataConfig(source="audiofolder", clip_seconds=0.01, sample_rate=16000)
    folder = saved_model(tmp_path, tiny("transinr", data, input_dim=1, output_dim=1, output_bias=0.0))
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, (0.5 * np.sin(np.arange(80) / 3)).astype(np.float32), 8000)  # resampled to 16 kHz
    reconstruct.main(reconstruct.Args(model=str(folder), input=str(clip), scale=2, out=str(tmp_path / "out"), steps=3))
    samples, rate = soundfile.read(tmp_path / "out" / "clip.wav_x2.wav")
    assert rate == 32000 and samples.shape == (320,)
    assert "clip.wav: psnr" in capsys.readouterr().out


def test_reconstruct_starts_from_the_models_own_evaluation_encoding(tmp_path, image_file, capsys):
    """With no test-time steps, reconstruct.py gives what the model's own encoding gives: for a meta model its
    evaluation inner steps (here --model.eval-inner-steps 0, not the 2 training steps)."""
    config = tiny("ipc-meta", DataConfig(resolution=8))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, eval_inner_steps=0))
    assert config.model.n_inner_steps == 2
    folder = saved_model(tmp_path, config)
    reconstruct.main(reconstruct.Args(model=str(folder), input=str(image_file), scale=1, out=str(tmp_path), steps=0))
    loaded = ginr.from_pretrained(folder)
    signal = reconstruct.read_signal(signal_transform(loaded.config.data, "image", training=False), image_file)
    coord_range = loaded.config.data.coord_range
    psnrs = {}
    for steps in (0, 2):
        modulation = inference.encode(loaded.model, loaded.params, signal, coord_range, n_steps=steps).modulation
        same = inference.decode(loaded.model, loaded.params, modulation, (8, 8), coord_range)
        psnrs[steps] = f"psnr {float(metrics.psnr(metrics.mse_per_sample(same, signal))):.2f} dB"
    assert psnrs[0] != psnrs[2] and f"photo.png: {psnrs[0]}" in capsys.readouterr().out


def test_reconstruct_audio_goes_through_the_evaluation_transform(tmp_path, capsys):
    """The input is what evaluation measures: LibriSpeech-style trimming of its end included."""
    root = tmp_path / "audio"
    wave = (0.5 * np.sin(np.arange(160) / 3) + 0.3).astype(np.float32)
    for split in ("train", "validation"):
        (root / split).mkdir(parents=True)
        soundfile.write(root / split / "clip.wav", wave, 16000)
    data = DataConfig(
        source="audiofolder", path=str(root), clip_seconds=0.01, sample_rate=16000, audio_trim_seconds=0.004
    )
    folder = saved_model(tmp_path, tiny("transinr", data, input_dim=1, output_dim=1, output_bias=0.0))
    reconstruct.main(
        reconstruct.Args(model=str(folder), input=str(root / "validation" / "clip.wav"), scale=1, out=str(tmp_path))
    )
    printed = capsys.readouterr().out
    loaded = ginr.from_pretrained(folder)
    psnrs = []
    for signal in (eval_dataset(loaded.config.data)[0], torch.from_numpy(wave)[:, None]):
        modulation = inference.encode(loaded.model, loaded.params, signal[None], data.coord_range).modulation
        same = inference.decode(loaded.model, loaded.params, modulation, (160,), data.coord_range)
        psnrs.append(f"psnr {float(metrics.psnr(metrics.mse_per_sample(same, signal[None]))):.2f} dB")
    evaluation, untrimmed = psnrs
    assert evaluation != untrimmed and f"clip.wav: {evaluation}" in printed


def test_encode_writes_every_modulation(tmp_path, image_folder):
    data = DataConfig(source="imagefolder", path=str(image_folder), resolution=8)
    folder = saved_model(tmp_path, tiny("ipc-meta", data))
    out = tmp_path / "new" / "folder" / "mods.safetensors"  # its folder is made
    encode_recipe.main(encode_recipe.Args(model=str(folder), out=str(out), batch_size=3))
    tensors = load_file(str(out))
    assert tensors["modulation.1"].shape == (4, 16, 16)  # 4 held-out images, V of layer 1 (fi 16, rank 16)
    assert torch.equal(tensors["index"], torch.arange(4)) and tensors["psnr"].shape == (4,)


def test_import_reference_checkpoint(tmp_path, capsys):
    config = presets.resolve("ipc-transinr", "celeba178")
    model = build(config.model_name, config.model)
    generator = torch.Generator().manual_seed(4)
    state = {rule.reference: torch.randn(rule.shape, generator=generator) for rule in rules_for(model)}
    params = from_reference(state, model)
    saved = {"epoch": 300, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(saved, tmp_path / "epoch300_model.pt")
    import_reference.main(
        [
            str(tmp_path / "epoch300_model.pt"),
            "--to",
            str(tmp_path / "out"),
            "--model",
            "ipc-transinr",
            "--data",
            "celeba178",
        ]
    )
    loaded = ginr.from_pretrained(tmp_path / "out")
    assert all(torch.equal(flatten(loaded.params)[k], v) for k, v in params.items())
    # the wrong config is refused by name
    with pytest.raises(SystemExit):
        import_reference.main(
            [
                str(tmp_path / "epoch300_model.pt"),
                "--to",
                str(tmp_path / "x"),
                "--model",
                "transinr",
                "--data",
                "celeba178",
            ]
        )
    assert "does not fit this model config" in capsys.readouterr().err


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_import_reference_never_runs_pickled_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(SystemExit):
        import_reference.main([str(path), "--to", str(tmp_path / "out"), "--model", "ipc-meta"])
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out and "as a weights-only checkpoint" in captured.err
    path.write_text("not a checkpoint " * 20)
    with pytest.raises(SystemExit):
        import_reference.main([str(path), "--to", str(tmp_path / "out"), "--model", "ipc-meta"])
    assert f"cannot read {path} as a weights-only checkpoint (a PyTorch file of tensors" in capsys.readouterr().err


def make_run(tmp_path: Path, image_folder) -> Path:
    config = tiny("ipc-meta", DataConfig(source="imagefolder", path=str(image_folder), resolution=8))
    model = build(config.model_name, config.model)
    holder = ParamsModule(model, model.init(torch.Generator().manual_seed(0)))
    history = [{"step": 4, "epoch": 1.0, "weights": "raw", "psnr": 21.5, "ssim": 0.7, "mse": 0.007, "count": 4}]
    state = {"num_processes": 1, "eval_history": history}
    checkpoint.save(
        tmp_path / "run", 4, accelerator=Accelerator(cpu=True), config=config, params=holder.tree(),
        optimizer=torch.optim.Adam(holder.parameters()), trainer_state=state,
    )  # fmt: skip
    (tmp_path / "run" / "eval_metrics.json").write_text(json.dumps(history))
    return tmp_path / "run"


def test_push_to_hub_stages_card_weights_and_samples(tmp_path, image_folder, monkeypatch):
    run = make_run(tmp_path, image_folder)
    stage = tmp_path / "stage"
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, folder_path, repo_id, revision, commit_message):
            calls["upload"] = (folder_path, repo_id, commit_message)
            return "https://huggingface.co/someone/tiny/commit/abc"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    push_to_hub.main(push_to_hub.Args(run=str(run), repo_id="someone/tiny", stage_dir=str(stage), samples=2))
    assert calls["create"] == ("someone/tiny", False, True)
    assert calls["upload"][:2] == (str(stage), "someone/tiny") and "step 4" in calls["upload"][2]
    card = (stage / "README.md").read_text()
    assert "library_name: ginr" in card and "value: 21.5000" in card and 'from_pretrained("someone/tiny")' in card
    assert "samples/reconstruction_x1.png" in card and (stage / "samples" / "reconstruction_x1.png").is_file()
    assert ginr.from_pretrained(stage).config.model_name == "ipc-meta"  # the staged folder is a loadable model


def test_push_to_hub_dry_run_uploads_nothing(tmp_path, image_folder, monkeypatch, capsys):
    run = make_run(tmp_path, image_folder)
    monkeypatch.setattr("huggingface_hub.HfApi", None)  # any upload attempt would fail
    push_to_hub.main(push_to_hub.Args(run=str(run), repo_id="someone/tiny", dry_run=True, samples=0))
    assert "dry run: nothing uploaded" in capsys.readouterr().out


def test_push_to_hub_offline_fails_with_one_line_and_keeps_the_staged_folder(
    tmp_path, image_folder, monkeypatch, capsys
):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    run = make_run(tmp_path, image_folder)
    stage = tmp_path / "stage"
    with pytest.raises(SystemExit) as exit_info:
        push_to_hub.main(push_to_hub.Args(run=str(run), repo_id="someone/tiny", stage_dir=str(stage), samples=0))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "error: could not push to someone/tiny: OfflineModeIsEnabled" in err
    assert f"The upload is staged in {stage}" in err and (stage / "model.safetensors").is_file()

    class Unreachable:  # online but no route to the Hub: the HTTP client's own error, not an OSError
        def create_repo(self, *args, **kwargs):
            raise hub_errors.HTTPError("no route to host")

    monkeypatch.setattr("huggingface_hub.HfApi", Unreachable)
    with pytest.raises(SystemExit) as exit_info:
        push_to_hub.main(push_to_hub.Args(run=str(run), repo_id="someone/tiny", stage_dir=str(stage), samples=0))
    assert exit_info.value.code == 1 and "no route to host" in capsys.readouterr().err
