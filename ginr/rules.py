"""Every rule that refuses a configuration, in one place.

:func:`validate` is the one check of a whole experiment: each section's own bounds, the model section's rules (the
shipped models' configs), and the rules that tie sections together (a NeRF tokenizer with multi-view data, the model
with the data's signal shape, the model's name with its ``factorized``). The command line, the model-folder reader
(:func:`ginr.hub.read_config`, so a hand-edited config.json too) and through them every recipe run it; the model
constructors run the model section's part (:func:`check_model`) so that a model built directly is checked as well.
Problems are collected and reported together, each naming the flag as a user types it::

    invalid configuration:
      --optim.lr=-1.0: must be > 0
      --model.factorized is ipc-meta, not learned-init: use --model ipc-meta

This module imports no model: it reads configs, so the models, the config reader and the cli can all use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from ginr.config import Config, HypernetINRConfig, HyponetConfig, MetaINRConfig, TransformerConfig
from ginr.data import is_views, signal_shape
from ginr.nn import tokenizers

FACTORIZED_NAMES = {
    MetaINRConfig: {True: "ipc-meta", False: "learned-init"},
    HypernetINRConfig: {True: "ipc-transinr", False: "transinr"},
}
"""The shipped model of each config type with ``factorized`` True or False: the name and the field must agree (a
model registered under a name of its own is not bound by this)."""


def refuse(problems: list[str]) -> None:
    """Raise one ValueError listing every problem, or nothing when there is none."""
    if problems:
        raise ValueError("invalid configuration:\n  " + "\n  ".join(problems))


def did_you_mean(flag: str, value: str, choices) -> str:
    """``unknown FLAG VALUE`` followed by the closest of ``choices`` when one is close enough."""
    close = difflib.get_close_matches(value, sorted(choices), n=1, cutoff=0.6)
    return f"unknown {flag} {value}" + (f"; did you mean {close[0]}?" if close else "")


# ---- the model section -----------------------------------------------------------------------------------------------


def hyponet_problems(config: HyponetConfig) -> list[str]:
    """The coordinate MLP's own rules (layers, widths, Fourier features, siren)."""
    problems = []
    if config.n_layer < 1:
        return [f"--model.hyponet.n-layer={config.n_layer} must be >= 1"]
    if len(config.hidden_dims()) != config.n_layer - 1 or any(w < 1 for w in config.hidden_dim):
        problems.append(
            f"--model.hyponet.hidden-dim={config.hidden_dim}: give 1 positive width or n_layer - 1 = "
            f"{config.n_layer - 1} of them"
        )
    if config.fourier.enabled and (config.fourier.dim < 1 or config.fourier.dim % config.input_dim):
        problems.append(
            f"--model.hyponet.fourier.dim={config.fourier.dim} must be a positive multiple of "
            f"--model.hyponet.input-dim={config.input_dim} (quirk 5)"
        )
    if config.activation == "siren" and (
        config.fourier.enabled or config.weight_init != "siren" or config.bias_init != "siren"
    ):
        problems.append(
            "--model.hyponet.activation=siren needs --model.hyponet.fourier.enabled False and "
            "--model.hyponet.weight-init / --model.hyponet.bias-init siren"
        )
    return problems


def transformer_problems(config: TransformerConfig) -> list[str]:
    """The hypernetwork transformer's own rules (heads divide the width, dropout probabilities)."""
    problems = []
    if config.embed_dim % config.n_head:
        problems.append(
            f"--model.transformer.embed-dim={config.embed_dim} must be a multiple of "
            f"--model.transformer.n-head={config.n_head}"
        )
    for name in ("resid_dropout", "attn_dropout"):
        if not 0 <= getattr(config, name) < 1:
            problems.append(f"--model.transformer.{name.replace('_', '-')} must be in [0, 1)")
    return problems


def layer_values(values: tuple[int, ...], given: tuple[int, ...] | None, fan_outs: list[int]) -> dict[int, int]:
    """A per-layer value (a rank or a token count) for each modulated layer, in layer order: one value for every layer,
    clipped to each layer's fan-out (fidelity 2.1, 2.4), or one per layer, paired with the layers in the order
    ``--model.modulated-layers`` names them (``given``; None: every layer, in order). The reference lists one value
    per hyponet layer instead; with its one modulated layer (the paper's presets) the two agree. The values must pass
    :func:`layer_value_problems`."""
    layers = tuple(range(len(fan_outs))) if given is None else tuple(given)
    chosen = {k: min(values[0] if len(values) == 1 else values[i], fan_outs[k]) for i, k in enumerate(layers)}
    return dict(sorted(chosen.items()))


def layer_value_problems(
    values: tuple[int, ...], given: tuple[int, ...] | None, fan_outs: list[int], flag: str
) -> list[str]:
    """``flag`` (a rank or a token count) takes 1 value (clipped to each fan-out) or one per layer named by
    ``--model.modulated-layers`` (``given``; None: every layer), each in 1..its fan-out (:func:`layer_values`)."""
    layers = tuple(range(len(fan_outs))) if given is None else tuple(given)
    if len(values) not in (1, len(layers)):
        return [f"{flag}={values}: give 1 value or one per modulated layer ({len(layers)})"]
    return [
        f"{flag}: {value} for layer {k} must be in 1..{fan_outs[k]} (its fan-out)"
        for value, k in zip(values * len(layers) if len(values) == 1 else values, layers)
        if value < 1 or (len(values) > 1 and value > fan_outs[k])
    ]


def model_problems(config) -> list[str]:
    """The rules of a shipped model's config (:class:`MetaINRConfig`, :class:`HypernetINRConfig`); a config type of
    your own (``ginr.models.register``) is its model constructor's to check."""
    if not isinstance(config, MetaINRConfig | HypernetINRConfig):
        return []
    problems = hyponet_problems(config.hyponet)
    if isinstance(config, HypernetINRConfig):
        problems += transformer_problems(config.transformer)
    if config.vmap_chunk_size is not None and config.vmap_chunk_size < 1:
        problems.append(f"--model.vmap-chunk-size={config.vmap_chunk_size} must be >= 1 or None")
    if isinstance(config, MetaINRConfig):
        if config.n_inner_steps < 0 or (config.eval_inner_steps or 0) < 0:
            problems.append("--model.n-inner-steps and --model.eval-inner-steps must be >= 0")
        if config.inner_lr <= 0:
            problems.append(f"--model.inner-lr={config.inner_lr} must be > 0")
    if hyponet_problems(config.hyponet):
        return problems  # the layer rules below need a hyponet that can be built
    n_layer, layers = config.hyponet.n_layer, config.modulated_layers
    if layers is not None and (
        not layers or any(not 0 <= k < n_layer for k in layers) or len(set(layers)) != len(layers)
    ):
        return [*problems, f"--model.modulated-layers={layers} must name distinct layers in 0..{n_layer - 1}"]
    fan_outs = [*config.hyponet.hidden_dims(), config.hyponet.output_dim]
    if isinstance(config, MetaINRConfig):
        if config.factorized:  # learned-init adapts the full weight and has no rank
            problems += layer_value_problems(config.rank, layers, fan_outs, "--model.rank")
        return problems
    token_problems = layer_value_problems(config.n_weight_tokens, layers, fan_outs, "--model.n-weight-tokens")
    if not token_problems:  # token ranges split each fan-out into equal groups (fidelity 2.1)
        token_problems = [
            f"--model.n-weight-tokens: layer {k}'s fan-out {fan_outs[k]} must be a multiple of its {groups} tokens"
            for k, groups in layer_values(config.n_weight_tokens, layers, fan_outs).items()
            if fan_outs[k] % groups
        ]
    return problems + token_problems


def check_hyponet(config: HyponetConfig) -> None:
    """Refuse a hyponet config that breaks :func:`hyponet_problems`."""
    refuse(hyponet_problems(config))


def check_model(config) -> None:
    """Refuse a model config that breaks :func:`model_problems` (the model constructors call this)."""
    refuse(model_problems(config))


# ---- the model against its data ----------------------------------------------------------------------------------


def signal_problems(config, shape: tuple[int, ...], channels: int) -> list[str]:
    """What keeps a shipped model of ``config`` from reading signals of spatial ``shape`` and ``channels``: the
    hyponet's input and output dimensions, and for the hypernetworks the token count the tokenizer cuts (NeRF views
    have shape (n, H, W) and 3 channels; their hyponet maps 3-D points to rgb and density)."""
    if not isinstance(config, MetaINRConfig | HypernetINRConfig):
        return []
    hyponet = config.hyponet
    if isinstance(config, HypernetINRConfig) and config.tokenizer.type == "nerf_views":
        if channels != 3 or len(shape) != 3:
            return [f"--model.tokenizer.type nerf_views reads RGB views (n, H, W, 3), not {shape}x{channels}"]
        if (hyponet.input_dim, hyponet.output_dim) != (3, 4):
            return [
                "a NeRF maps 3-D points to rgb + density: set --model.hyponet.input-dim 3 and "
                f"--model.hyponet.output-dim 4 (not {hyponet.input_dim} and {hyponet.output_dim})"
            ]
        what = f"{shape[0]} support view(s) of {shape[1]}x{shape[2]} px"
    else:
        if len(shape) != hyponet.input_dim or channels != hyponet.output_dim:
            return [
                f"the data gives {len(shape)}-D signals with {channels} channel(s), but --model.hyponet.input-dim="
                f"{hyponet.input_dim} and --model.hyponet.output-dim={hyponet.output_dim}"
            ]
        what = f"{'x'.join(map(str, shape))} signals"
    if isinstance(config, MetaINRConfig):
        return []
    try:
        count = tokenizers.n_tokens(config.tokenizer, shape)  # refuses a patch size that does not tile the signal
    except ValueError as error:
        return [str(error)]
    if count != config.tokenizer.n_tokens:
        return [
            f"--model.tokenizer.n-tokens={config.tokenizer.n_tokens}, but {what} give {count} tokens with this "
            f"patch size: set --model.tokenizer.n-tokens {count}"
        ]
    return []


def check_signal(config, shape: tuple[int, ...], channels: int) -> None:
    """Refuse signals that a model of ``config`` cannot read (:func:`signal_problems`)."""
    refuse(signal_problems(config, shape, channels))


# ---- the whole experiment ----------------------------------------------------------------------------------------


def nonfinite_problems(config, prefix: str = "--") -> list[str]:
    """Every float field of ``config`` (a config dataclass, walked section by section) that is inf or NaN, named as
    its flag: ``--optim.lr inf`` (or ``Infinity`` in a config.json) would otherwise train to inf weights, and no
    bound of :func:`section_problems` is written to catch a NaN."""
    problems = []
    for field in dataclasses.fields(config):
        value, flag = getattr(config, field.name), f"{prefix}{field.name.replace('_', '-')}"
        if dataclasses.is_dataclass(value):
            problems += nonfinite_problems(value, f"{flag}.")
        elif any(
            isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else [value])
        ):
            problems.append(f"{flag}={value!r}: must be a finite number")
    return problems


def run_name_problems(name: str | None) -> list[str]:
    """``--train.run-name`` names one folder inside ``--train.out-dir``: no path separator, no ``..``, not empty
    (``../../x`` would write outside the output folder)."""
    if name is None or (name not in ("", ".", "..") and "/" not in name and "\\" not in name):
        return []
    return [
        f"--train.run-name={name!r}: must be one folder name (no '/', no '..'); set the parent with --train.out-dir"
    ]


def section_problems(config: Config) -> list[str]:
    """The bounds of the optimiser, run, data and rendering sections."""
    problems = []

    def need(ok: bool, flag: str, rule: str, value) -> None:
        if not ok:
            problems.append(f"{flag}={value!r}: {rule}")

    optim, train, data = config.optim, config.train, config.data
    need(optim.lr > 0, "--optim.lr", "must be > 0", optim.lr)
    need(all(0 <= b < 1 for b in optim.betas), "--optim.betas", "each must be in [0, 1)", optim.betas)
    need(optim.eps > 0, "--optim.eps", "must be > 0", optim.eps)
    need(optim.weight_decay >= 0, "--optim.weight-decay", "must be >= 0", optim.weight_decay)
    need(optim.warmup_epochs >= 0, "--optim.warmup-epochs", "must be >= 0", optim.warmup_epochs)
    need(optim.min_lr is None or optim.min_lr >= 0, "--optim.min-lr", "must be >= 0 or None", optim.min_lr)
    need(optim.init_warmup_steps >= 0, "--optim.init-warmup-steps", "must be >= 0", optim.init_warmup_steps)
    need(
        optim.max_grad_norm is None or optim.max_grad_norm > 0,
        "--optim.max-grad-norm",
        "must be > 0 or None",
        optim.max_grad_norm,
    )
    need(train.batch_size > 0, "--train.batch-size", "must be > 0", train.batch_size)
    need(train.grad_accumulation > 0, "--train.grad-accumulation", "must be > 0", train.grad_accumulation)
    need(train.epochs > 0, "--train.epochs", "must be > 0", train.epochs)
    need(train.max_steps is None or train.max_steps > 0, "--train.max-steps", "must be > 0 or None", train.max_steps)
    for name in ("eval_every", "checkpoint_every", "keep_checkpoints", "image_every", "log_every"):
        value = getattr(train, name)
        need(value > 0, f"--train.{name.replace('_', '-')}", "must be > 0", value)
    need(
        train.eval_batch_size is None or train.eval_batch_size > 0,
        "--train.eval-batch-size",
        "must be > 0",
        train.eval_batch_size,
    )
    need(train.ema is None or 0 < train.ema < 1, "--train.ema", "must be in (0, 1) or None", train.ema)
    need(
        train.coord_subsample is None or 0 < train.coord_subsample <= 1,
        "--train.coord-subsample",
        "must be in (0, 1] or None",
        train.coord_subsample,
    )
    need(train.skip_limit > 0, "--train.skip-limit", "must be > 0", train.skip_limit)
    need(
        train.cpu_threads is None or train.cpu_threads > 0,
        "--train.cpu-threads",
        "must be > 0 or None",
        train.cpu_threads,
    )
    need(data.resolution > 0, "--data.resolution", "must be > 0", data.resolution)
    need(data.sample_rate > 0, "--data.sample-rate", "must be > 0", data.sample_rate)
    need(
        data.clip_seconds * data.sample_rate >= 1,
        "--data.clip-seconds",
        "must give at least one sample",
        data.clip_seconds,
    )
    need(data.audio_trim_seconds >= 0, "--data.audio-trim-seconds", "must be >= 0", data.audio_trim_seconds)
    need(data.coord_range[0] < data.coord_range[1], "--data.coord-range", "needs lo < hi", data.coord_range)
    need(data.num_workers >= 0, "--data.num-workers", "must be >= 0", data.num_workers)
    need(data.support_views >= 1, "--data.support-views", "must be >= 1 (the paper uses 1 to 5)", data.support_views)
    for name in ("query_views", "train_views", "train_repeat", "eval_draws"):
        value = getattr(data, name)
        need(value > 0, f"--data.{name.replace('_', '-')}", "must be > 0", value)
    need(
        data.source != "shapenet" or not (data.skip_bad_files or data.cache_dir),
        "--data.skip-bad-files / --data.cache-dir",
        "apply to image and audio files, not to shapenet's views (they are read as they are)",
        (data.skip_bad_files, data.cache_dir),
    )
    need(
        0 <= data.depth_range[0] < data.depth_range[1],
        "--data.depth-range",
        "needs 0 <= near < far",
        data.depth_range,
    )
    render = config.render
    for name in ("points_per_ray", "train_rays", "chunk_rays"):
        value = getattr(render, name)
        need(value > 0, f"--render.{name.replace('_', '-')}", "must be > 0", value)
    need(
        render.points_per_ray > 1 or not render.jitter,
        "--render.points-per-ray",
        "must be > 1 to jitter",
        render.points_per_ray,
    )
    need(
        render.foreground_first_epochs >= 0,
        "--render.foreground-first-epochs",
        "must be >= 0",
        render.foreground_first_epochs,
    )
    need(
        render.eval_rays is None or render.eval_rays > 0, "--render.eval-rays", "must be > 0 or None", render.eval_rays
    )
    return problems


def cross_section_problems(config: Config) -> list[str]:
    """The rules between sections: the model's name and its ``factorized``; a NeRF tokenizer exactly with multi-view
    data; the meta models on full grids; the model against the data's signal shape."""
    model, problems = config.model, []
    names = FACTORIZED_NAMES.get(type(model), {})
    if config.model_name in names.values() and names[model.factorized] != config.model_name:
        right, flag = names[model.factorized], "--model.factorized" if model.factorized else "--model.no-factorized"
        problems.append(f"{flag} is {right}, not {config.model_name}: use --model {right}")
    nerf = getattr(getattr(model, "tokenizer", None), "type", None) == "nerf_views"
    if nerf != is_views(config.data):
        problems.append(
            "multi-view data (--data.source shapenet) and a NeRF model (--model.tokenizer.type nerf_views) go "
            "together: start from a shapenet preset (--model ipc-transinr|transinr --data shapenet-cars|chairs|lamps)"
        )
    if isinstance(model, MetaINRConfig) and (config.train.coord_subsample or config.train.coord_noise):
        problems.append(
            "--train.coord-subsample and --train.coord-noise apply to hypernetwork models; the meta-learning "
            "inner loop and its outer loss use the full grid (docs/fidelity.md 2.4)"
        )
    layout = signal_shape(config.data)
    if layout is not None and not problems and not model_problems(model):
        problems += signal_problems(model, *layout)
    return problems


def fresh_run_problems(config: Config) -> list[str]:
    """Rules for a run started from a command line, not for a saved config: a resumed run whose config recorded a
    --data.path beside the embedded photos (once ignored, now refused) keeps working."""
    if config.data.source == "photos" and config.data.path is not None:
        return [
            f"--data.path={config.data.path} is not read by --data.source photos (the embedded photographs); add "
            "--data.source imagefolder (or celeba, ffhq, librispeech, hub) to use that data"
        ]
    return []


def validate(config: Config, *, fresh_run: bool = False) -> None:
    """Refuse an experiment that cannot work, listing every problem (:func:`section_problems`,
    :func:`model_problems`, :func:`cross_section_problems`, and with ``fresh_run`` (a new run's command line)
    :func:`fresh_run_problems`) in one ValueError."""
    problems = nonfinite_problems(config)
    problems += section_problems(config) + model_problems(config.model) + cross_section_problems(config)
    problems += run_name_problems(config.train.run_name)
    refuse(problems + (fresh_run_problems(config) if fresh_run else []))
