"""Turn an image, a folder of images or an audio clip into an INR and decode it at any resolution.

    python recipes/reconstruct.py runs/<run> photo.jpg --scale 3 --out out/            # PNG at 3x the resolution
    python recipes/reconstruct.py user/ginr-librispeech clip.flac --scale 2             # WAV at 2x the sampling rate
    python recipes/reconstruct.py runs/<run> folder/ --tto-steps 50                     # with test-time optimisation
    python recipes/reconstruct.py runs/<run> photo.jpg --keep-fraction 0.25 --tto-steps 20   # inpaint 75% of it
    python recipes/reconstruct.py runs/<run> photo.jpg --mask mask.png                  # white = observed
    python recipes/reconstruct.py user/ginr-librispeech clip.flac --gap 0.3 0.5         # fill in 0.3 s .. 0.5 s
    python recipes/reconstruct.py runs/<nerf-run> cars/<id>/ --support 0 --views 10 20  # a NeRF from a set of views

Inputs go through the model's own evaluation transform (resize + centre crop to its resolution; audio resampled and
cut to its clip length), with a line saying so for each input it changes. ``--tto-steps`` (or ``--steps``) is that
many Adam steps on the modulation after the model's own encoding, for every family (:mod:`ginr.tto`). The PSNR
against the (transformed) input is printed for every file; given part of it (``--keep-fraction``, ``--mask``,
``--gap``: :mod:`ginr.masks`), on the observed and the unobserved positions too. For a NeRF the input is a set of
views, an object folder in the learnit layout (transforms.json and its PNGs): ``--support`` frames are the model's
input (and what ``--tto-steps`` fits, on seeded random rays), the other frames (or ``--views``) are rendered and
compared.

Each image or audio input writes two files to ``--out``, named after its whole file name so ``c.bmp`` and ``c.webp``
write apart: ``<name>_x<scale>.png`` (or ``.wav``) and ``<name>_compare.png``, input (as the model saw it: masked
where masked) | prediction | ground truth side by side at one scale (audio: three waveforms, one under the other;
:mod:`ginr.panels`). A name this run has already used (an input, or another output) gets ``-2``, ``-3``, ...
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

import soundfile
import torch
import tyro
from PIL import Image
from torchvision.utils import save_image
from tqdm.auto import tqdm

from ginr import cli, from_pretrained, inference, masks, metrics, panels, tasks, tto
from ginr.coords import grid
from ginr.data import signal_transform
from ginr.data.layouts import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from ginr.data.shapenet import ViewsObject


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    input: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="INPUT")]
    """An image, a folder of images, an audio file, or (NeRF) an object folder with transforms.json."""
    scale: float = 3.0
    """Decode at this many times the resolution (images) or the sampling rate (audio)."""
    steps: Annotated[int, tyro.conf.arg(aliases=("--tto-steps",))] = 0
    """Test-time optimisation: Adam steps on the modulation after the model's own encoding (0: none)."""
    lr: Annotated[float, tyro.conf.arg(aliases=("--tto-lr",))] = 1e-3
    """Adam learning rate of test-time optimisation."""
    keep_fraction: float | None = None
    """Give the model only this fraction of the pixels (or samples), drawn at random with --mask-seed."""
    mask: str | None = None
    """Images: give the model only the pixels that are white in this mask image (resized to the model's size)."""
    gap: tuple[float, float] | None = None
    """Audio: hide the seconds START to END from the model."""
    mask_seed: int = 0
    """Seed of --keep-fraction's random positions."""
    out: str = "reconstructions"
    """Output folder: <input file name>_x<scale>.png (or .wav) and <input file name>_compare.png per input."""
    revision: str | None = None
    """Hub revision when MODEL is a repo id."""
    support: tuple[int, ...] | None = None
    """NeRF: the frames given as support views; None: frames 0, 1, ... (as many as the model reads)."""
    views: tuple[int, ...] | None = None
    """NeRF: the held-out frames to render and compare; None: every frame that is not a support view."""


def inputs(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{path} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return [path]


def read_signal(transform, path: Path) -> torch.Tensor:
    """One file through the model's evaluation transform: (1, *S, C); a file that cannot be read is a ValueError
    naming it."""
    try:
        return transform({"path": str(path), "bytes": None}, None)[None]
    except (OSError, RuntimeError, ValueError) as error:  # PIL, soundfile and the transforms' own checks
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {error}") from error


def observation(args: Args) -> masks.Observation:
    """The part of each input the model is given (all of it unless --keep-fraction, --mask or --gap)."""
    return masks.Observation(args.keep_fraction, args.mask, args.gap, args.mask_seed)


def progress(steps: int):
    """A progress bar of ``steps`` test-time steps showing the PSNR on what is fitted, and its callback."""
    bar = tqdm(total=steps, desc="test-time optimisation", disable=not steps)

    def report(step, modulation, psnr):
        bar.set_postfix(psnr=f"{psnr.mean():.2f}")
        bar.update(step > 0)

    return bar, report


def encode_refined(loaded, signal: torch.Tensor, steps: int, lr: float, observed: torch.Tensor | None = None):
    """The model's encoding of ``signal`` from its ``observed`` positions (None: all), refined by ``steps`` Adam steps
    on them (:func:`ginr.inference.refine`), showing the PSNR on them as it goes."""
    coord_range = loaded.config.data.coord_range
    params = inference.detached(loaded.params)
    coords = grid(tuple(signal.shape[1:-1]), coord_range)
    with torch.no_grad():
        modulation = masks.encode_observed(loaded.model, params, signal, coords, observed).modulation
    bar, report = progress(steps)
    modulation, _ = inference.refine(loaded.model, params, signal, modulation, coord_range, steps, lr, report, observed)
    bar.close()
    return modulation


def reconstruct_views(loaded, args: Args) -> None:
    """A NeRF from the support frames of an object folder: render the held-out frames, print their PSNR."""
    folder, out = Path(args.input), Path(args.out)
    with cli.refusals():
        if observation(args).partial:  # the refusal eval.py gives too
            tasks.require_signals(loaded.config, "--keep-fraction, --mask and --gap: the model")
        if not (folder / "transforms.json").is_file():
            raise ValueError(f"{loaded.config.data_name} models read a set of views: {folder} has no transforms.json")
        obj = ViewsObject(folder)
        support = inference.support_frames(obj, args.support, loaded.config.data.support_views)
        held_out = [k for k in range(len(obj)) if k not in support] if args.views is None else list(args.views)
        inference.check_frames(obj, held_out, "--views")
    out.mkdir(parents=True, exist_ok=True)
    bar, report = progress(args.steps)
    test_time = tto.TestTime((args.steps,), args.lr)
    config = loaded.config
    refine_support = lambda views, modulation: tto.refine_views(  # noqa: E731
        loaded.model, loaded.params, views, modulation, config.render, config.data.depth_range, test_time, report
    )[0]
    renders, truths, psnr = inference.render_frames(
        config, loaded.model, loaded.params, obj, support, held_out, "cpu", refine_support if args.steps else None
    )
    bar.close()
    for frame, rendered, truth, value in zip(held_out, renders, truths, psnr.tolist()):
        target = out / f"{folder.name}_view{frame:03d}.png"
        save_image(torch.stack([truth, rendered.clamp(0, 1)]).permute(0, 3, 1, 2), target)
        print(f"view {frame}: psnr {value:.2f} dB -> {target} (ground truth | render)")
    print(
        f"{folder.name}: support frames {support}, mean psnr {psnr.mean():.2f} dB over {len(held_out)} held-out view(s)"
    )


def claim(target: Path, taken: set[Path]) -> Path:
    """``target``, or ``<stem>-2<suffix>``, ``-3``, ... when this run has taken that name (an input, or an output
    already written), so no output overwrites an input or another output; the name returned is then taken."""
    candidate, count = target, 1
    while candidate.resolve() in taken:
        count += 1
        candidate = target.with_name(f"{target.stem}-{count}{target.suffix}")
    taken.add(candidate.resolve())
    return candidate


def fitted_note(path: Path, data, audio: bool) -> str | None:
    """The line saying how the evaluation transform fitted ``path`` to the model (resize and centre crop to its
    resolution; resampling, trimming and cutting or padding to its clip), or None when it already fits."""
    if audio:
        info = soundfile.info(str(path))
        changes = [f"resampled to {data.sample_rate} Hz"] if info.samplerate != data.sample_rate else []
        samples = math.ceil(info.frames * data.sample_rate / info.samplerate)  # as many as resample_poly gives
        if data.audio_trim_seconds:
            changes.append(f"its last {data.audio_trim_seconds:g} s dropped")
            samples -= round(data.audio_trim_seconds * data.sample_rate)
        length = round(data.clip_seconds * data.sample_rate)
        if samples != length:
            changes.append(f"{'cut' if samples > length else 'zero-padded'} to {data.clip_seconds:g} s")
        described = f"{info.frames / info.samplerate:.2f} s at {info.samplerate} Hz"
        return f"{path.name}: {described} {', '.join(changes)} (the model's rate and clip length)" if changes else None
    with Image.open(path) as image:
        width, height = image.size
    side = data.resolution
    if width == height == side:
        return None
    if width == height:
        how = "resized"
    else:
        how = "centre-cropped" if min(width, height) == side else "resized and centre-cropped"
    return f"{path.name}: {width}x{height} {how} to {side}x{side} (the model's resolution)"


def write_outputs(
    args: Args,
    data,
    taken: set[Path],
    path: Path,
    scaled: torch.Tensor,
    truth: torch.Tensor,
    observed: torch.Tensor | None = None,
) -> tuple[Path, Path]:
    """``path``'s reconstruction (``scaled``: (*S, C) at ``--scale``) as ``<input file name>_x<scale>.png`` (audio:
    ``.wav``) and the side-by-side ``<input file name>_compare.png`` of ``observed`` (what the model saw; default
    ``truth``, the transformed input), the reconstruction and ``truth`` (:mod:`ginr.panels`), in ``--out``. The
    input's extension stays in the names, so ``c.bmp`` and ``c.webp`` write apart; :func:`claim` keeps any other
    clash apart. Returns the two paths."""
    observed = truth if observed is None else observed
    audio = scaled.dim() == 2  # (T, 1); images are (H, W, 3)
    target = claim(Path(args.out) / f"{path.name}_x{args.scale:g}.{'wav' if audio else 'png'}", taken)
    comparison = claim(Path(args.out) / f"{path.name}_compare.png", taken)
    if audio:
        soundfile.write(target, scaled[:, 0].clamp(-1, 1).numpy(), int(data.sample_rate * args.scale))
        panels.audio_comparison(observed[:, 0], scaled[:, 0], truth[:, 0]).save(comparison)
    else:
        save_image(scaled.permute(2, 0, 1).clamp(0, 1), target)
        panels.image_comparison(observed, scaled, truth).save(comparison)
    return target, comparison


def reconstruct_signals(loaded, args: Args) -> None:
    """Each image of a file or folder, or an audio file: its reconstruction at ``--scale`` times the resolution (or
    sampling rate), and its PSNR at the input's own."""
    data = loaded.config.data
    source, out = Path(args.input), Path(args.out)
    audio = source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS
    with cli.refusals():
        if args.scale <= 0:
            raise ValueError(f"--scale {args.scale} must be > 0")
        files = [source] if audio else inputs(source)
        given = observation(args)
        given.check(audio)
    out.mkdir(parents=True, exist_ok=True)
    transform = signal_transform(data, "audio" if audio else "image", training=False)
    taken = {path.resolve() for path in files}  # output names this run may not use: its inputs, then its outputs
    for path in files:
        with cli.refusals():
            signal = read_signal(transform, path)
            if any(int(size * args.scale) < 1 for size in signal.shape[1:-1]):
                raise ValueError(f"--scale {args.scale} leaves no pixel (or sample) of {path}'s {signal.shape[1:-1]}")
            observed = given.mask_for(tuple(signal.shape[1:-1]), data.sample_rate)
        if note := fitted_note(path, data, audio):
            print(note)
        modulation = encode_refined(loaded, signal, args.steps, args.lr, observed)
        shape = tuple(signal.shape[1:-1])
        same = inference.decode(loaded.model, loaded.params, modulation, shape, data.coord_range)
        if observed is not None:
            split = {name: float(value) for name, value in masks.split_psnr(same, signal, observed).items()}
            print(
                f"{path.name}: psnr {split['psnr_observed']:.2f} dB on the {int(observed.sum())} observed positions, "
                f"{split['psnr_unobserved']:.2f} dB on the {int((~observed).sum())} unobserved ones"
            )
        psnr = float(metrics.psnr(metrics.mse_per_sample(same, signal)))
        scaled_shape = tuple(int(size * args.scale) for size in shape)
        scaled = inference.decode(loaded.model, loaded.params, modulation, scaled_shape, data.coord_range)[0]
        target, comparison = write_outputs(
            args, data, taken, path, scaled, signal[0], None if observed is None else masks.hidden(signal, observed)[0]
        )
        size = "x".join(map(str, scaled_shape))
        print(f"{path.name}: psnr {psnr:.2f} dB -> {target} ({size}), {comparison} ({' | '.join(panels.LABELS)})")


def main(args: Args) -> None:
    with cli.refusals():
        loaded = from_pretrained(args.model, revision=args.revision)
    reconstruct = tasks.nerf_or_signals(loaded.config, nerf=reconstruct_views, signals=reconstruct_signals)
    reconstruct(loaded, args)


if __name__ == "__main__":
    main(tyro.cli(Args))
