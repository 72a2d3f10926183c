"""Typed configuration: one frozen dataclass per concern.

Every field is a command-line flag of ``recipes/train.py`` (through tyro), so the one-line docstring under each field
is what ``--help`` prints. Defaults are the reference's dataclass defaults (fidelity 1.1, 2.4) unless a
field's docstring says otherwise (the model configs default to the paper's IPC layer); the paper's per-experiment
values live in :mod:`ginr.presets`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

import tyro

FourierType = Literal["deterministic_transinr", "deterministic_transinr_nerf", "random_gaussian"]
Activation = Literal["relu", "siren", "silu"]
InitScheme = Literal["normal", "kaiming_uniform", "uniform_fan_in", "zero", "siren"]
Precision = Literal["fp32", "tf32", "bf16", "fp16"]
CompileMode = Literal["auto", "off", "default", "reduce-overhead", "max-autotune"]


@dataclasses.dataclass(frozen=True)
class FourierConfig:
    """Fourier feature mapping of the input coordinates (fidelity 1.4)."""

    enabled: bool = True
    """Map coordinates to Fourier features before the first layer (the reference's ``use_ff``)."""
    type: FourierType = "deterministic_transinr"
    """Frequency layout: geometric 1..sigma with a pi factor, NeRF's 2^linspace(0, sigma), or random Gaussian."""
    sigma: float = 1024.0
    """Largest frequency (deterministic_transinr), log2 of it (..._nerf), or the Gaussian's scale (random_gaussian)."""
    dim: int = 128
    """Number of frequencies (all input dims together); the features are [cos, sin], so 2*dim of them."""
    trainable: bool = False
    """Train the frequencies (the reference never does)."""


@dataclasses.dataclass(frozen=True)
class HyponetConfig:
    """The coordinate MLP shared by every model and signal type (fidelity 1)."""

    n_layer: int = 5
    """Number of linear layers, the output layer included."""
    hidden_dim: tuple[int, ...] = (256,)
    """Width of the hidden layers: one value for all of them, or one per hidden layer (n_layer - 1 values)."""
    input_dim: int = 2
    """Coordinate dimension (2 for images, 1 for audio, 3 for NeRF points)."""
    output_dim: int = 3
    """Signal channels (3 for RGB, 1 for audio, 4 for NeRF rgb + density)."""
    use_bias: bool = True
    """Give every layer a bias."""
    output_bias: float = 0.5
    """Constant added to the output (0.5 centres RGB in [0, 1])."""
    fourier: FourierConfig = FourierConfig()
    activation: Activation = "relu"
    """Hidden activation."""
    siren_w0: float = 30.0
    """Frequency factor of the siren activation sin(w0 x)."""
    weight_init: InitScheme = "kaiming_uniform"
    """Weight initialisation (fidelity 1.3; kaiming_uniform keeps the reference's U(+-1/sqrt(fan_out)), quirk 1)."""
    bias_init: InitScheme = "zero"
    """Bias initialisation (fidelity 1.3)."""
    normalize_weight: bool = True
    """Divide every layer's weight columns by their L2 norm over the fan-in axis (fidelity 1.5)."""

    def hidden_dims(self) -> tuple[int, ...]:
        """The width of each of the ``n_layer - 1`` hidden layers (a single value is broadcast)."""
        if len(self.hidden_dim) == 1:
            return self.hidden_dim * (self.n_layer - 1)
        return self.hidden_dim


@dataclasses.dataclass(frozen=True)
class MetaINRConfig:
    """ipc-meta and learned-init: a per-instance factor adapted by a few SGD steps (fidelity 2.4, 3.3)."""

    hyponet: HyponetConfig = HyponetConfig()
    rank: tuple[int, ...] = (256,)
    """Rank r of each modulated layer's instance factor V (fi x r); one value for all layers or one per layer, in the
    order --model.modulated-layers names them."""
    modulated_layers: tuple[int, ...] | None = (1,)
    """Hyponet layers whose weight is the instance pattern composer; None modulates every layer (the reference's
    dataclass default; ginr's default is the paper's IPC layer)."""
    factorized: bool = True
    """W = V U with a shared U (ipc-meta); False adapts the full weight W = V (learned-init)."""
    n_inner_steps: int = 2
    """Inner-loop SGD steps during training."""
    inner_lr: float = 0.01
    """Inner-loop learning rate (scaled per layer by ||V||_F^2 when normalize_weight is on)."""
    first_order: bool = False
    """Drop the second-order terms (the inner gradient is treated as a constant in the outer backward pass)."""
    eval_inner_steps: int | None = None
    """Inner steps at evaluation; None uses n_inner_steps."""
    vmap_chunk_size: int | None = None
    """Adapt at most this many instances at once (bounds memory); None adapts the whole batch together."""


DataSource = Literal["photos", "imagefolder", "audiofolder", "celeba", "ffhq", "librispeech", "hub", "shapenet"]


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """How a signal becomes the transformer's data tokens (fidelity 2.3)."""

    type: Literal["image_patches", "audio_patches", "nerf_views"] = "image_patches"
    """image_patches: p x p patches by unfold (channel-major features, row-major patches); audio_patches: windows of
    p samples (reflect-padded at the end when needed); nerf_views: p x p patches of every support view's per-pixel
    [rgb, ray origin, ray direction], view after view (fidelity 5.3)."""
    patch_size: int = 9
    """Patch side (images) or window length (audio)."""
    padding: int = 1
    """Zero padding on every image border before cutting patches."""
    n_tokens: int = 400
    """Data tokens per instance (the positional embedding's length); must match what the data gives (NeRF: 256 per
    128-px support view, set by --data.support-views)."""


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The pre-LN transformer of the hypernetwork (fidelity 2.2)."""

    embed_dim: int = 768
    """Token width."""
    n_layer: int = 6
    """Transformer blocks."""
    n_head: int = 12
    """Attention heads (embed_dim must divide by it)."""
    mlp_ratio: int = 4
    """MLP hidden width = mlp_ratio x embed_dim."""
    resid_dropout: float = 0.1
    """Dropout on the attention and MLP outputs before each residual add, in training (quirk 10)."""
    attn_dropout: float = 0.0
    """Dropout on the attention probabilities, in training."""
    gelu: Literal["exact", "sigmoid"] = "exact"
    """exact: erf GELU (the reference's v1); sigmoid: x * sigmoid(1.702 x) (v2)."""


@dataclasses.dataclass(frozen=True)
class HypernetINRConfig:
    """ipc-transinr and transinr: a transformer reads the signal's tokens and predicts the instance factors
    (fidelity 2.1, 3.1)."""

    hyponet: HyponetConfig = HyponetConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    transformer: TransformerConfig = TransformerConfig()
    n_weight_tokens: tuple[int, ...] = (256,)
    """Weight tokens G per modulated layer (the rank of ipc-transinr's factor; clipped to the fan-out); one value for
    all layers or one per layer, in the order --model.modulated-layers names them. fan_out must divide by G."""
    modulated_layers: tuple[int, ...] | None = (1,)
    """Hyponet layers the hypernetwork modulates; None modulates every layer (the reference's dataclass default;
    ginr's default is the paper's IPC layer)."""
    factorized: bool = True
    """ipc-transinr: W = A U with a shared U, the base weight ignored. False: transinr, W = W_base * tile(A)."""
    vmap_chunk_size: int | None = None
    """Decode at most this many instances at once (bounds memory); None decodes the whole batch together."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the signals come from and how they become training examples (fidelity 7; presets in ginr.data.catalog)."""

    source: DataSource = "photos"
    """photos (embedded, no download) | imagefolder / audiofolder: <path>/<split>/[<class>/]* | celeba: flat
    img_align_celeba folder | ffhq: NNNNN.png chosen by the split lists | librispeech: <path>/<subset>/<spk>/<chap>/*.flac |
    hub: a Hugging Face dataset id or a local folder of parquet files | shapenet: learnit's multi-view renders,
    <path>/<category>/<id>/transforms.json + PNGs with <path>/<category minus s>_splits.json."""
    path: str | None = None
    """Folder of the data, or for source=hub the dataset id (owner/name) or a local parquet folder; unused by photos."""
    split_lists: str | None = None
    """Folder holding ffhqtrain.txt and ffhqvalidation.txt (FFHQ; their order defines the dataset index, quirk 29);
    None looks in --data.path."""
    hub_config: str | None = None
    """source=hub: the dataset's config name (for the parquet export revision refs/convert/parquet, its config folder)."""
    hub_revision: str | None = None
    """source=hub: branch, tag or commit of the dataset repo (None: main)."""
    column: str | None = None
    """source=hub: the column holding the images or audio; None takes the first Image or Audio column."""
    train_split: str = "train"
    """Split used for training (a subset name for librispeech, e.g. train-clean-100)."""
    eval_split: str = "validation"
    """Held-out split used for evaluation (CelebA's presets use test, as the reference does: quirk 17)."""
    resolution: int = 32
    """Images are resized (shorter side) and centre-cropped to resolution x resolution."""
    train_transform: Literal["resize_center_crop", "random_crop_flip"] = "resize_center_crop"
    """Training transform; random_crop_flip crops at native scale and flips (ImageNette, fidelity 7, quirk 16)."""
    sample_rate: int = 16000
    """Audio is resampled to this rate (Hz)."""
    clip_seconds: float = 1.0
    """Audio clips are cut to this length: a random window in training, the start in evaluation, zero-padded."""
    audio_trim_seconds: float = 0.0
    """Drop this much from the end of every clip before cropping; the LibriSpeech presets drop 1 s like the
    reference's CropAudio(total_secs=-1) (quirk 15); 0 keeps whole clips."""
    coord_range: tuple[float, float] = (-1.0, 1.0)
    """Coordinates span this interval on every axis (pixel centres, fidelity 4.1)."""
    num_workers: int = 0
    """DataLoader worker processes per training process (they decode and transform); also the cache builders."""
    cache_dir: str | None = None
    """Keep splits with the resize_center_crop transform here as resized PNGs (built once, lossless, exact);
    later runs skip decoding and resizing the originals. None: no cache."""
    skip_bad_files: bool = False
    """Check every file once before training and drop unreadable ones (corrupt, truncated, smaller than the crop),
    logging how many; False stops at the first bad file with its name."""
    category: str = "cars"
    """source=shapenet: the category folder (cars, chairs, lamps); its splits are <path>/<category minus s>_splits.json."""
    support_views: int = 1
    """source=shapenet: views the model sees per object (its tokens: 256 per 128-px view; given on the command line,
    it sets --model.tokenizer.n-tokens to match)."""
    query_views: int = 1
    """source=shapenet: views rendered and compared per object."""
    train_views: int = 25
    """source=shapenet: training draws its views from the first this many frames of each object (learnit's training
    views 0-24); evaluation draws from all frames."""
    train_repeat: int = 1
    """source=shapenet: each training object appears this many times per epoch, each with its own draw of views."""
    eval_draws: int = 100
    """source=shapenet: (support, query) draws per held-out object; a fixed, seeded list (quirk 24 fixed)."""
    redraw_eval: bool = False
    """source=shapenet: draw new random views at every evaluation, as the reference does (quirk 24), instead of the
    fixed list; evaluations are then not reproducible."""
    depth_range: tuple[float, float] = (2.0, 6.0)
    """source=shapenet: near and far depth along every ray (fidelity 5.2)."""


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam and its learning-rate schedule (fidelity 6.3)."""

    lr: float = 1e-4
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.0
    """L2 weight decay (torch.optim.Adam's)."""
    warmup_epochs: float = 0.0
    """Linear warm-up from lr 0 over this many epochs; the first step runs at lr 0 (quirk 8)."""
    min_lr: float | None = None
    """Cosine-anneal to this value after warm-up; None keeps the learning rate constant (the reference's effect)."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm to this value; None disables clipping."""
    init_warmup_steps: int = 100
    """Fine-tuning (--init-from): scale the learning rate by (s + 1) / N on steps s < N, from the source run's Adam
    state or a fresh Adam (model folders and Hub models keep none), whose first updates move every weight by about
    the learning rate whatever its gradient. Measured in the README's "Fine-tuning"; 0: no warm-up."""
    init_state: tyro.conf.Suppress[Literal["restored", "warm-up"] | None] = None
    """How a fine-tuning run's Adam started, recorded by the run: with the source run's state 'restored', or fresh
    ('warm-up' alone); both warm up over init_warmup_steps. None: a run from scratch."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The run: global batch, length, cadence, precision, checkpoints."""

    batch_size: int = 16
    """Global batch (all processes and accumulation steps together; fidelity policy)."""
    grad_accumulation: int = 1
    """Micro-batches per optimizer step on each process; batch_size must equal per-device batch x processes x this."""
    epochs: int = 10
    """Training epochs."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: train all epochs)."""
    eval_every: int = 1
    """Evaluate on the held-out split after the first epoch and every this many epochs (as the reference), and at the
    end."""
    eval_at_start: bool = True
    """Evaluate the untrained model before the first step."""
    checkpoint_every: int = 1
    """Write a checkpoint every this many epochs (and always at the end)."""
    keep_checkpoints: int = 3
    """Keep the newest this many checkpoints (the newest complete one is never removed)."""
    image_every: int = 1
    """Log reconstruction images with the evaluations before the first step, after the first epoch, at every
    multiple of this many epochs (the reference's test_imlog_freq) and at the end."""
    log_every: int = 10
    """Log training scalars every this many optimizer steps."""
    eval_batch_size: int | None = None
    """Global evaluation batch; None uses batch_size."""
    precision: Precision = "fp32"
    """Arithmetic: fp32 (TF32 off: the reference's, and the default by the fidelity policy), tf32 matmuls, or
    bf16/fp16 autocast with fp32 master weights, losses and metrics. Speed and accuracy of each setting: the
    README's "Benchmarks" section."""
    ema: float | None = None
    """Keep an exponential moving average of the weights with this decay (warmed up as (1+s)/(10+s)); None: off."""
    seed: int = 0
    """Seeds the initial weights, the data order and every random draw."""
    cpu: bool = False
    """Train on the CPU even when a GPU is present."""
    cpu_threads: int | None = None
    """Threads per process on the CPU; None: the process's share of the CPUs it may use."""
    compile: CompileMode = "auto"
    """torch.compile the training objective in this mode (fused elementwise work, fewer kernel launches; the first
    steps pay the compilation; 'reduce-overhead' also replays CUDA graphs) or 'off'. Same function as the plain path
    (tested). auto: 'default' on a CUDA GPU, 'off' elsewhere (it does not pay on a CPU: README "Benchmarks")."""
    init_from: tyro.conf.Suppress[str | None] = None
    """Model folder or Hub repo id the weights started from (set by --init-from)."""
    init_revision: tyro.conf.Suppress[str | None] = None
    """Hub revision of init_from (set by --init-revision)."""
    coord_subsample: float | None = None
    """Train each instance on this random fraction of its coordinates (fidelity 4.3; hypernetwork models only)."""
    coord_noise: bool = False
    """Jitter training coordinates by U(-1/2, 1/2) x (hi - lo) / S0, S0 the first axis's size (fidelity 4.2, quirk 22;
    hypernetwork models only)."""
    out_dir: str = "runs"
    """Parent folder of run folders."""
    run_name: str | None = None
    """Run folder name under out_dir; None uses <model>_<data>_<date-time>."""
    overwrite: bool = False
    """Replace the run a run folder already holds (its checkpoints, events and metrics are deleted)."""
    nonfinite: Literal["skip", "stop"] = "skip"
    """A step whose loss or gradients are not finite (NaN/inf) on any process: 'skip' it (weights, optimizer and EMA
    untouched; counted in train/skipped_steps) or 'stop' the run naming the step, its batch and the last checkpoint."""
    skip_limit: int = 10
    """With --train.nonfinite skip: stop once this many steps in a row were skipped (the run is not recovering)."""


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Novel-view synthesis: rays sampled for training, points along rays, volume rendering (fidelity 5.2-5.6)."""

    points_per_ray: int = 128
    """Points per ray, evenly spaced over --data.depth-range."""
    jitter: bool = True
    """In training, move every point by U[0, 1) x its spacing (one draw shared by the batch; quirk 13)."""
    train_rays: int = 128
    """Rays drawn per training object (from all its query views together)."""
    foreground_first_epochs: int = 2
    """In epochs 0 .. N-1, half of the training rays go through foreground (non-white) pixels (the reference's
    adaptive sampling: epochs 0 and 1, quirk 14); 0 draws every ray uniformly from the start."""
    eval_rays: int | None = 128
    """Evaluations during training render this many random, jittered rays per object: a noisy estimate logged as
    psnr_estimate (the reference's in-training evaluation, quirk 11). None renders full views. The evaluation at the
    end of training and recipes/eval.py always render full views."""
    chunk_rays: int = 1024
    """Full views are rendered this many rays per object at a time (bounds memory; no jitter)."""


M = TypeVar("M")


@dataclasses.dataclass(frozen=True)
class Config(Generic[M]):
    """A whole experiment: the model, its data, the optimiser and the run."""

    model: M
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    render: RenderConfig = RenderConfig()
    model_name: tyro.conf.Suppress[str] = "ipc-meta"
    """Model name as typed after --model."""
    data_name: tyro.conf.Suppress[str] = "photos"
    """Data preset name as typed after --data."""


def to_dict(config) -> dict:
    """A JSON-ready nested dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def _build(hint, value, where: str):
    """Rebuild a value of type ``hint`` from its JSON form, refusing unknown fields and values of the wrong type
    (``where`` names the field in errors)."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object for {hint.__name__}, got {value!r}")
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} for {hint.__name__}; known: {sorted(names)}")
        return hint(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _build(arg, value, where)
            except ValueError:
                continue
        raise ValueError(f"{where}={value!r} is not a {hint}")
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{where}={value!r}: choose one of {list(args)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}={value!r}: expected a list")
        types_ = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(types_) != len(value):
            raise ValueError(f"{where}={value!r}: expected {len(types_)} values")
        return tuple(_build(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(types_, value)))
    scalar = {int: (int,), float: (int, float), bool: (bool,), str: (str,), type(None): (type(None),)}.get(hint)
    if scalar is not None:
        if not isinstance(value, scalar) or (isinstance(value, bool) and hint is not bool):
            raise ValueError(f"{where}={value!r}: expected {hint.__name__}")
        return float(value) if hint is float else value
    return value


def from_dict(data: dict, model_config_type: Callable[[str], type]) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict` output; ``model_config_type(model_name)`` gives the model
    section's dataclass (:func:`ginr.models.model_config_type`, which knows the registered models). Values are only
    type-checked here: :func:`ginr.rules.validate` checks what they mean.

    Every section must be there, as :func:`dumps` (a run's config.json, ``save_pretrained``'s) writes them: a
    missing one is refused by name rather than filled with defaults the run never had."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of config sections, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    missing = [name for name in fields if name not in data]
    if missing:
        raise ValueError(
            f"missing section(s) {missing}; a saved ginr config has every one of {sorted(fields)} (write it with "
            "ginr.save_pretrained or take a run's own config.json)"
        )
    model_type = model_config_type(data["model_name"])
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(fields)}")
    kwargs = {"model": _build(model_type, data["model"], "model")}
    for name, cls in (("data", DataConfig), ("optim", OptimConfig), ("train", TrainConfig), ("render", RenderConfig)):
        kwargs[name] = _build(cls, data[name], name)
    for name in ("model_name", "data_name"):
        kwargs[name] = _build(str, data[name], name)
    return Config[model_type](**kwargs)


def dumps(config) -> str:
    """The config as indented JSON."""
    return json.dumps(to_dict(config), indent=2)
