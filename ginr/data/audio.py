"""Audio decoding without FFmpeg (soundfile on the raw bytes: mono, resampled) and the reference's CropAudio
(fidelity 7)."""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile
import torch


def decode(entry: dict, sample_rate: int) -> torch.Tensor:
    """A ``datasets.Audio(decode=False)`` entry (``bytes`` and/or ``path``) -> mono float32 samples (T,) at
    ``sample_rate``, in [-1, 1]."""
    source = io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry["path"]
    samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        divisor = math.gcd(rate, sample_rate)
        samples = resample_poly(samples, sample_rate // divisor, rate // divisor).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(samples))


def crop(samples: torch.Tensor, length: int, generator: torch.Generator | None) -> torch.Tensor:
    """A window of ``length`` samples: random (inclusive start in [0, T - length]) with a generator, else the start;
    zero-padded on the right when the clip is shorter."""
    if generator is not None and samples.numel() > length:
        start = int(torch.randint(0, samples.numel() - length + 1, (1,), generator=generator))
    else:
        start = 0
    clip = samples[start : start + length]
    return torch.nn.functional.pad(clip, (0, length - clip.numel()))


class AudioClip:
    """Picklable transform for loader workers: an undecoded audio entry (+ per-sample seed) -> (T, 1) tensor.

    The reference's ``CropAudio`` (fidelity 7): drop ``trim_seconds`` from the end (its ``total_secs=-1`` drops 1 s,
    quirk 15; a clip no longer than that becomes silence), then a random window in training or the start in
    evaluation, zero-padded to ``clip_seconds``.
    """

    def __init__(self, sample_rate: int, clip_seconds: float, random_crop: bool, trim_seconds: float = 0.0):
        self.sample_rate = sample_rate
        self.length = int(round(clip_seconds * sample_rate))
        self.trim = int(round(trim_seconds * sample_rate))
        self.random_crop = random_crop

    def __call__(self, entry: dict, seed: int | None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed or 0) if self.random_crop else None
        samples = decode(entry, self.sample_rate)
        if self.trim:
            samples = samples[: max(samples.numel() - self.trim, 0)]
        return crop(samples, self.length, generator).unsqueeze(-1)
