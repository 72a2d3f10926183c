"""Audio decoding without FFmpeg (soundfile on the raw bytes: mono, resampled) and the reference's CropAudio
(fidelity 7)."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import soundfile
import torch

PEAK_LIMIT = 1.01
"""The largest sample magnitude accepted (full scale is 1; a float file may overshoot it a little, but one holding
integer-scaled samples, say 1000, is refused rather than trained on)."""


def open_audio(entry: dict) -> soundfile.SoundFile:
    """The audio file of an undecoded entry (``bytes`` and/or ``path``), its header read and checked against
    truncation (:func:`truncation`)."""
    file = soundfile.SoundFile(io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry["path"])
    problem = truncation(file)
    if problem:
        file.close()
        raise ValueError(problem)
    return file


def truncation(file: soundfile.SoundFile) -> str | None:
    """Why ``file`` is truncated, or None: libsndfile reads a WAV (or AIFF) whose data chunk is cut short as the
    samples that are there, noting ``data : N (should be M)`` in its header report; ginr refuses it instead of
    zero-padding the rest (a truncated FLAC fails to decode by itself)."""
    cut = re.search(r"^(?:data|SSND)\s*:\s*(\d+) \(should be (\d+)\)", file.extra_info, re.MULTILINE)
    if cut and int(cut[2]) < int(cut[1]):
        return f"truncated: its header declares {cut[1]} bytes of samples, the file holds {cut[2]}"
    return None


def check_header(entry: dict, seed: int | None = None) -> None:
    """Refuse (raise) an entry whose file is no audio libsndfile reads, or a truncated one: the cheap pass over every
    file of a split before training (:func:`ginr.data.cache.check_headers`). ``seed`` is unused."""
    open_audio(entry).close()


def decode(entry: dict, sample_rate: int) -> torch.Tensor:
    """A ``datasets.Audio(decode=False)`` entry (``bytes`` and/or ``path``) -> mono float32 samples (T,) at
    ``sample_rate``, in [-1, 1]. A truncated file, and samples beyond :data:`PEAK_LIMIT`, are refused."""
    with open_audio(entry) as file:
        samples, rate = file.read(dtype="float32", always_2d=True), file.samplerate
    peak = float(np.abs(samples).max(initial=0))
    if not peak <= PEAK_LIMIT:
        raise ValueError(
            f"samples reach {peak:g}, far outside [-1, 1] (a float file holding integer-scaled or unnormalised "
            "samples?); rescale it to [-1, 1]"
        )
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
