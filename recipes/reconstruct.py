"""Turn an image, a folder of images or an audio clip into an INR and decode it at any resolution.

    python recipes/reconstruct.py runs/<run> photo.jpg --scale 3 --out out/            # PNG at 3x the resolution
    python recipes/reconstruct.py user/ginr-librispeech clip.flac --scale 2             # WAV at 2x the sampling rate
    python recipes/reconstruct.py runs/<run> folder/ --steps 50                         # with test-time optimisation
    python recipes/reconstruct.py runs/<nerf-run> cars/<id>/ --support 0 --views 10 20  # a NeRF from a set of views

Inputs go through the model's own evaluation transform (resize + centre crop to its resolution; audio resampled and
cut to its clip length). ``--steps`` runs the meta-learned inner loop that many steps, or that many Adam steps on a
hypernetwork's predicted factors, printing the PSNR after each. The PSNR against the (transformed) input is printed
for every file. For a NeRF the input is a set of views, an object folder in the learnit layout (transforms.json and
its PNGs): ``--support`` frames are the model's input, the other frames (or ``--views``) are rendered and compared.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import soundfile
import torch
import tyro
from torchvision.utils import save_image
from tqdm.auto import tqdm

from ginr import cli, from_pretrained, inference, metrics, tasks
from ginr.data import signal_transform
from ginr.data.layouts import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from ginr.data.shapenet import ViewsObject
from ginr.models.meta import MetaINR


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    input: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="INPUT")]
    """An image, a folder of images, an audio file, or (NeRF) an object folder with transforms.json."""
    scale: float = 3.0
    """Decode at this many times the resolution (images) or the sampling rate (audio)."""
    steps: int = 0
    """Test-time optimisation steps (0: the model's own encoding)."""
    lr: float = 1e-3
    """Adam learning rate of test-time optimisation (hypernetwork models)."""
    out: str = "reconstructions"
    """Output folder."""
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


def encode_refined(loaded, signal: torch.Tensor, steps: int, lr: float):
    """The model's encoding, refined by ``steps`` of test-time optimisation, and the PSNR after each step."""
    coord_range = loaded.config.data.coord_range
    if isinstance(loaded.model, MetaINR):
        config = loaded.config.model  # the evaluation's inner steps, as MetaINR.encode counts them
        base = config.n_inner_steps if config.eval_inner_steps is None else config.eval_inner_steps
        encoding = inference.encode(loaded.model, loaded.params, signal, coord_range, n_steps=base + steps)
        for step, mse in enumerate(encoding.inner_mse.T.tolist()[base:], start=1):
            tqdm.write(f"  inner step {base + step - 1}: psnr {metrics.psnr(torch.tensor(mse)).mean():.2f}")
        return encoding.modulation
    modulation = inference.encode(loaded.model, loaded.params, signal, coord_range).modulation
    if steps:
        bar = tqdm(total=steps, desc="test-time optimisation")

        def report(step, psnr):
            bar.set_postfix(psnr=f"{psnr.mean():.2f}")
            bar.update(step > 0)

        modulation, _ = inference.refine(
            loaded.model, loaded.params, signal, modulation, coord_range, steps, lr, report
        )
        bar.close()
    return modulation


def reconstruct_views(loaded, args: Args) -> None:
    """A NeRF from the support frames of an object folder: render the held-out frames, print their PSNR."""
    folder, out = Path(args.input), Path(args.out)
    with cli.refusals():
        if not (folder / "transforms.json").is_file():
            raise ValueError(f"{loaded.config.data_name} models read a set of views: {folder} has no transforms.json")
        obj = ViewsObject(folder)
        support = inference.support_frames(obj, args.support, loaded.config.data.support_views)
        held_out = [k for k in range(len(obj)) if k not in support] if args.views is None else list(args.views)
        inference.check_frames(obj, held_out, "--views")
    out.mkdir(parents=True, exist_ok=True)
    renders, truths, psnr = inference.render_frames(
        loaded.config, loaded.model, loaded.params, obj, support, held_out, "cpu"
    )
    for frame, rendered, truth, value in zip(held_out, renders, truths, psnr.tolist()):
        target = out / f"{folder.name}_view{frame:03d}.png"
        save_image(torch.stack([truth, rendered.clamp(0, 1)]).permute(0, 3, 1, 2), target)
        print(f"view {frame}: psnr {value:.2f} dB -> {target} (ground truth | render)")
    print(
        f"{folder.name}: support frames {support}, mean psnr {psnr.mean():.2f} dB over {len(held_out)} held-out view(s)"
    )


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
    out.mkdir(parents=True, exist_ok=True)
    transform = signal_transform(data, "audio" if audio else "image", training=False)
    for path in files:
        with cli.refusals():
            signal = read_signal(transform, path)
            if any(int(size * args.scale) < 1 for size in signal.shape[1:-1]):
                raise ValueError(f"--scale {args.scale} leaves no pixel (or sample) of {path}'s {signal.shape[1:-1]}")
        modulation = encode_refined(loaded, signal, args.steps, args.lr)
        shape = tuple(signal.shape[1:-1])
        same = inference.decode(loaded.model, loaded.params, modulation, shape, data.coord_range)
        psnr = float(metrics.psnr(metrics.mse_per_sample(same, signal)))
        scaled_shape = tuple(int(size * args.scale) for size in shape)
        scaled = inference.decode(loaded.model, loaded.params, modulation, scaled_shape, data.coord_range)[0]
        if audio:
            target = out / f"{path.stem}_x{args.scale:g}.wav"
            soundfile.write(target, scaled[:, 0].clamp(-1, 1).numpy(), int(data.sample_rate * args.scale))
        else:
            target = out / f"{path.stem}_x{args.scale:g}.png"
            save_image(scaled.permute(2, 0, 1).clamp(0, 1), target)
        print(f"{path.name}: psnr {psnr:.2f} dB -> {target} ({'x'.join(map(str, scaled_shape))})")


def main(args: Args) -> None:
    with cli.refusals():
        loaded = from_pretrained(args.model, revision=args.revision)
    reconstruct = tasks.nerf_or_signals(loaded.config, nerf=reconstruct_views, signals=reconstruct_signals)
    reconstruct(loaded, args)


if __name__ == "__main__":
    main(tyro.cli(Args))
