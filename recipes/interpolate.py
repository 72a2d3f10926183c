"""Decode the straight path between two instances' modulations, to see whether the space between them is smooth.

    python recipes/interpolate.py runs/<run> a.jpg b.jpg --steps 8 --out strip.png     # two image files
    python recipes/interpolate.py runs/<run> 3 17 --steps 8                          # two held-out instances
    python recipes/interpolate.py runs/<run> 0 5 --split train                       # two training instances
    python recipes/interpolate.py runs/<audio-run> a.flac b.flac --out path.png      # path_00.wav .. path_09.wav
    python recipes/interpolate.py runs/<nerf-run> cars/<id> 2 --steps 6              # NeRF: object folder or index

A and B are files (read through the model's evaluation transform, as ``recipes/reconstruct.py`` reads them) or
indices into the model's held-out split (``--split``: another), as ``ginr.data.eval_dataset`` numbers it. Both are
encoded with the model's own encoding (a NeRF: from their support views) and the ``--steps`` points strictly between
their modulations are decoded with the two ends (t = 0: A's own reconstruction, t = 1: B's;
:mod:`ginr.interpolation`). Images: one PNG strip at ``--out``, left to right from A to B at the model's resolution.
Audio: one WAV per point beside ``--out`` (``<stem>_00.wav`` is A). NeRF: a PNG strip of one view per point, all from
the camera of A's first query view (an object folder: its first frame that is not a support view).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import soundfile
import torch
import tyro
from reconstruct import read_signal
from torchvision.utils import save_image

from ginr import cli, from_pretrained, inference, interpolation, paths, tasks
from ginr.data import eval_dataset, signal_transform
from ginr.data.layouts import AUDIO_EXTENSIONS
from ginr.data.shapenet import ViewsObject
from ginr.pytree import tree_map


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    a: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="A")]
    """The path's start: a file (NeRF: an object folder) or an index into --split."""
    b: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="B")]
    """The path's end: a file (NeRF: an object folder) or an index into --split."""
    steps: int = 8
    """Points strictly between A and B (the strip holds steps + 2)."""
    out: str = "interpolation.png"
    """The PNG strip; audio: the WAVs <stem>_00.wav .. beside it."""
    split: str | None = None
    """Split that indices A and B number; None: the model's held-out split."""
    data_path: str | None = None
    """Where the data lives, if not where the model was trained from."""
    revision: str | None = None
    """Hub revision when MODEL is a repo id."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device to encode, decode and render on."""


class Instances:
    """Reads A and B: a file through the evaluation transform, or an item of the split (loaded once, when first
    asked for)."""

    def __init__(self, loaded, args: Args):
        self.data = cli.with_data_path(loaded.config.data, args.data_path)
        self.split = args.split or self.data.eval_split
        self.dataset = None

    def item(self, text: str):
        """Item ``text`` (an index) of the split; a ValueError when it is no index or out of range."""
        if not text.isdigit():
            raise ValueError(f"{text} is neither a file nor an index into the {self.split} split")
        if self.dataset is None:
            self.dataset = eval_dataset(self.data, self.split)
        index = int(text)
        if index >= len(self.dataset):
            raise ValueError(f"index {index}: the {self.split} split has instances 0 .. {len(self.dataset) - 1}")
        return self.dataset[index]

    def signal(self, text: str) -> torch.Tensor:
        """A file or an item of the split as a signal (1, *S, C)."""
        path = Path(text)
        if not path.exists():
            return self.item(text)[None]
        kind = "audio" if path.suffix.lower() in AUDIO_EXTENSIONS else "image"
        return read_signal(signal_transform(self.data, kind, training=False), path)

    def views(self, text: str) -> tuple[dict, dict]:
        """An object folder or an item of the split as its support views and its first query view (leading dims
        (k,) and (1,))."""
        folder = Path(text)
        if not folder.exists():
            item = self.item(text)
            return item["support"], {k: v[:1] for k, v in item["query"].items()}
        if not (folder / "transforms.json").is_file():
            raise ValueError(f"{folder} has no transforms.json (a NeRF reads an object folder of the learnit layout)")
        obj = ViewsObject(folder)
        support = inference.support_frames(obj, None, self.data.support_views)
        query = next(k for k in range(len(obj)) if k not in support)
        return obj.views(support, self.data.resolution), obj.views([query], self.data.resolution)


def ends(modulation: dict) -> tuple[dict, dict]:
    """A batch of two instances' modulation as the first's and the second's (leaves (1, ...))."""
    return tree_map(lambda t: t[:1], modulation), tree_map(lambda t: t[1:], modulation)


def interpolate_signals(loaded, args: Args, params: dict, device: torch.device) -> None:
    """Images: the decoded path as one PNG strip; audio: one WAV per point."""
    with cli.refusals():
        instances = Instances(loaded, args)
        a, b = instances.signal(args.a), instances.signal(args.b)
        if a.shape != b.shape:
            raise ValueError(f"A ({args.a}: {tuple(a.shape[1:])}) and B ({args.b}: {tuple(b.shape[1:])}) differ")
    coord_range = instances.data.coord_range
    modulation = inference.encode(loaded.model, params, torch.cat([a, b]).to(device), coord_range).modulation
    frames = interpolation.decode_path(loaded.model, params, *ends(modulation), args.steps, a.shape[1:-1], coord_range)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.dim() == 3:  # audio (1, T, 1)
        for k, frame in enumerate(frames.cpu()):
            target = out.with_name(f"{out.stem}_{k:02d}.wav")
            soundfile.write(target, frame[:, 0].clamp(-1, 1).numpy(), instances.data.sample_rate)
        print(f"{len(frames)} points from {args.a} to {args.b} -> {out.stem}_00.wav .. {target.name} in {out.parent}")
        return
    save_image(frames.permute(0, 3, 1, 2).clamp(0, 1), out, nrow=len(frames), padding=0)
    print(f"{len(frames)} points from {args.a} (left) to {args.b} (right) -> {out}")


def interpolate_views(loaded, args: Args, params: dict, device: torch.device) -> None:
    """A NeRF: one view per point of the path, from the camera of A's first query view, as one PNG strip."""
    with cli.refusals():
        instances = Instances(loaded, args)
        (support_a, camera), (support_b, _) = instances.views(args.a), instances.views(args.b)
    support = {k: torch.stack([support_a[k], support_b[k]]).to(device) for k in support_a}
    with torch.no_grad():
        modulation = loaded.model.encode(params, support, None, training=False).modulation
    config = loaded.config
    frames = interpolation.render_path(
        loaded.model, params, *ends(modulation), args.steps, camera["poses"][0].to(device),
        camera["focals"][0].to(device), tuple(camera["images"].shape[1:3]), config.render, instances.data.depth_range,
    )  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(frames.permute(0, 3, 1, 2).clamp(0, 1), out, nrow=len(frames), padding=0)
    print(f"{len(frames)} views from {args.a} (left) to {args.b} (right), one camera -> {out}")


def main(args: Args) -> None:
    with cli.refusals():
        if args.steps < 0:
            raise ValueError(f"--steps {args.steps} must be >= 0 (the points between A and B)")
        paths.writable_file(args.out, "--out")
        loaded = from_pretrained(args.model, revision=args.revision)
    device = torch.device(args.device)
    params = tree_map(lambda t: t.detach().to(device), loaded.params)
    interpolate = tasks.nerf_or_signals(loaded.config, nerf=interpolate_views, signals=interpolate_signals)
    interpolate(loaded, args, params, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
