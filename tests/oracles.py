"""The tests' oracles: plain, independent implementations of the reference behaviour that ginr's math is held against.

Each oracle follows the section of the reference behaviour it names, written the obvious way (explicit loops or
explicit formulas, in the reference's layout) and without ginr's model code, so a test that compares ginr with an
oracle checks the rule rather than a second copy of the implementation. One oracle per concept:

- the hyponet (fidelity 1.2, 1.4, 1.5): ``fourier_features``, ``normalize_columns``, ``reference_matrices``,
``hyponet``;
- the hypernetwork's transformer (fidelity 2.2): ``linear``, ``layer_norm``, ``gelu``, ``attention``, ``transformer``;
- the data tokenizers (fidelity 2.3): ``image_patches``, ``audio_patches``;
- ipc-transinr and transinr (fidelity 2.1, 3.1): ``hypernet_layers``, ``hypernet_factors``, ``hypernet``;
- ipc-meta and learned-init's inner loop (fidelity 2.4, 3.3, quirks 20-21): ``meta_adapt``, ``meta_outer``;
- novel views (fidelity 5.3, 5.4): ``view_tokens`` (support views to tokens), ``volume_composite`` (one ray at a time);

and the two tree helpers the comparisons share, ``trainable`` and ``cast``.
"""

from __future__ import annotations

import math

import torch

from ginr.config import FourierConfig, HypernetINRConfig, HyponetConfig, MetaINRConfig, TransformerConfig
from ginr.pytree import flatten, tree_map

# ----------------------------------------------------------------------------------------------------------------------
# Param trees
# ----------------------------------------------------------------------------------------------------------------------


def trainable(params: dict) -> dict[str, torch.Tensor]:
    """The leaves that require grad, by dotted name: what an outer optimiser trains and a gradient check compares."""
    return {name: leaf for name, leaf in flatten(params).items() if leaf.requires_grad}


def cast(params: dict, dtype: torch.dtype) -> dict:
    """A detached copy of ``params`` in ``dtype`` whose leaves keep whether they require grad."""
    return tree_map(lambda t: t.detach().to(dtype).requires_grad_(t.requires_grad), params)


# ----------------------------------------------------------------------------------------------------------------------
# Hyponet (fidelity 1.2, 1.4, 1.5)
# ----------------------------------------------------------------------------------------------------------------------


def fourier_features(x: torch.Tensor, frequencies: torch.Tensor, config: FourierConfig) -> torch.Tensor:
    """Fidelity 1.4: coordinates (N, D) -> ``[cos z, sin z]``, cos first.

    Deterministic types: ``z[:, d F + k] = x[:, d] f[k]``, written as one block of F columns per input dimension
    d (d-major, frequency-minor). random_gaussian: ``z[:, j] = sum_d x[:, d] B[d, j]``, summed term by term. z is
    multiplied by pi, except for deterministic_transinr_nerf.
    """
    columns = x.unbind(1)
    if config.type == "random_gaussian":
        z = torch.zeros(x.shape[0], frequencies.shape[1], dtype=x.dtype)
        for x_d, row in zip(columns, frequencies.unbind(0)):
            z = z + x_d[:, None] * row[None, :]
    else:
        z = torch.cat([x_d[:, None] * frequencies[None, :] for x_d in columns], dim=1)
    if config.type != "deterministic_transinr_nerf":
        z = z * math.pi
    return torch.cat([torch.cos(z), torch.sin(z)], dim=1)


def normalize_columns(weight: torch.Tensor) -> torch.Tensor:
    """Fidelity 1.5: each output column j of W' (fi, fo) divided by ``max(||W'[:, j]||_2, 1e-12)``, the norm over
    fan-in."""
    norms = torch.sqrt((weight * weight).sum(dim=0, keepdim=True))
    return weight / torch.clamp(norms, min=1e-12)


def activation(config: HyponetConfig, x: torch.Tensor) -> torch.Tensor:
    """The hidden activation: ReLU, siren's ``sin(w0 x)`` or SiLU ``x sigmoid(x)``."""
    if config.activation == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if config.activation == "siren":
        return torch.sin(config.siren_w0 * x)
    if config.activation == "silu":
        return x * torch.sigmoid(x)
    raise AssertionError(config.activation)


def reference_matrices(params: dict, config: HyponetConfig) -> list[torch.Tensor]:
    """Fidelity 1.2: the reference's ``params_dict``, per layer ``P = [W; b]`` of shape (fi + 1, fo), or (fi, fo)
    without bias, built from a hyponet params tree (weight (fi, fo), bias (fo,)).

    A weightless layer's weight rows are dead in the reference (``ignore_base_param``); zeros stand in for them.
    """
    widths = [2 * config.fourier.dim if config.fourier.enabled else config.input_dim, *config.hidden_dims()]
    matrices = []
    for k in range(config.n_layer):
        layer = params["layers"][str(k)]
        weight = layer.get("weight")
        if weight is None:
            assert "bias" in layer, "the fan-out of a weightless layer is read from its bias"
            weight = torch.zeros(widths[k], layer["bias"].shape[0], dtype=layer["bias"].dtype)
        matrices.append(torch.cat([weight, layer["bias"][None, :]], dim=0) if config.use_bias else weight)
    return matrices


def hyponet(
    params: dict, config: HyponetConfig, coords: torch.Tensor, weights: dict[int, torch.Tensor] | None = None
) -> torch.Tensor:
    """Fidelity 1.5 for one instance: coordinates (..., D) -> (..., output_dim).

    ``weights[k]`` (fi, fo) is layer k's instance weight with ``ignore_base_param`` set, so ``W' = weights[k]``; any
    other layer keeps its own weight (M all ones). Every layer appends a ones column to the hidden state and multiplies
    by ``[normalize_columns(W'); b]`` (the bias row is never normalised); the activation follows every layer but the
    last, and ``output_bias`` is added at the end.
    """
    weights = weights or {}
    lead = coords.shape[:-1]
    hidden = coords.reshape(-1, config.input_dim)
    if config.fourier.enabled:
        hidden = fourier_features(hidden, params["fourier"]["frequencies"], config.fourier)
    for k, matrix in enumerate(reference_matrices(params, config)):
        fan_in = hidden.shape[1]
        weight = weights[k] if k in weights else matrix[:fan_in]
        if config.normalize_weight:
            weight = normalize_columns(weight)
        if config.use_bias:
            hidden = torch.cat([hidden, torch.ones(hidden.shape[0], 1, dtype=hidden.dtype)], dim=1)
            weight = torch.cat([weight, matrix[fan_in:]], dim=0)
        hidden = hidden @ weight
        if k < config.n_layer - 1:
            hidden = activation(config, hidden)
    return (hidden + config.output_bias).reshape(*lead, config.output_dim)


# ----------------------------------------------------------------------------------------------------------------------
# Transformer (fidelity 2.2)
# ----------------------------------------------------------------------------------------------------------------------


def linear(p: dict, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's layout: weight (out, in), ``y = x W^T + b``."""
    return x @ p["weight"].T + p["bias"]


def layer_norm(p: dict, x: torch.Tensor) -> torch.Tensor:
    """Over the last axis with the biased variance and eps 1e-5, then the affine weight and bias."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * p["weight"] + p["bias"]


def gelu(kind: str, x: torch.Tensor) -> torch.Tensor:
    """``exact``: ``x Phi(x)`` with the erf; ``sigmoid``: ``x sigmoid(1.702 x)``."""
    if kind == "exact":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return x / (1.0 + torch.exp(-1.702 * x))


def softmax(s: torch.Tensor) -> torch.Tensor:
    """Over the last axis (the keys), shifted by the maximum."""
    e = torch.exp(s - s.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def attention(p: dict, n_head: int, x: torch.Tensor) -> torch.Tensor:
    """A per-head loop: head h reads channels [h d, (h + 1) d); ``softmax(q k^T / sqrt(d)) v``; heads concatenated
    and projected. No mask."""
    q, k, v = linear(p["query"], x), linear(p["key"], x), linear(p["value"], x)
    d = x.shape[-1] // n_head
    heads = []
    for h in range(n_head):
        cols = slice(h * d, (h + 1) * d)
        scores = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(d)
        heads.append(softmax(scores) @ v[..., cols])
    return linear(p["proj"], torch.cat(heads, dim=-1))


def transformer_block(p: dict, config: TransformerConfig, x: torch.Tensor) -> torch.Tensor:
    """Pre-LN: ``x + attn(LN1(x))``, then ``x + FC2(GELU(FC1(LN2(x))))`` (no dropout: the evaluation pass)."""
    x = x + attention(p["attn"], config.n_head, layer_norm(p["ln1"], x))
    hidden = gelu(config.gelu, linear(p["mlp"]["fc1"], layer_norm(p["ln2"], x)))
    return x + linear(p["mlp"]["fc2"], hidden)


def transformer(params: dict, config: TransformerConfig, x: torch.Tensor) -> torch.Tensor:
    """The block stack over (B, L, E) tokens; no final LayerNorm."""
    for index in range(config.n_layer):
        x = transformer_block(params["blocks"][str(index)], config, x)
    return x


# ----------------------------------------------------------------------------------------------------------------------
# Data tokenizers (fidelity 2.3)
# ----------------------------------------------------------------------------------------------------------------------


def image_patches(images: torch.Tensor, p: int, pad: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, L, C p p) with explicit loops over instances, patches, channels, kernel rows and columns:
    zero padding; features channel-major, then kernel row, then kernel column; patches row-major over the grid."""
    batch, height, width, channels = images.shape
    data = images.tolist()  # python lists: fast scalar reads
    rows_of_patches = (height + 2 * pad) // p
    cols_of_patches = (width + 2 * pad) // p
    out = []
    for b in range(batch):
        tokens = []
        for pr in range(rows_of_patches):  # patch grid, row-major
            for pc in range(cols_of_patches):
                feature = []
                for c in range(channels):  # channel-major ...
                    for kr in range(p):  # ... then kernel row ...
                        for kc in range(p):  # ... then kernel column
                            r = pr * p + kr - pad  # position in the unpadded image
                            s = pc * p + kc - pad
                            inside = 0 <= r < height and 0 <= s < width
                            feature.append(data[b][r][s][c] if inside else 0.0)
                tokens.append(feature)
        out.append(tokens)
    return torch.tensor(out, dtype=images.dtype)


def audio_patches(samples: list[float], p: int) -> list[list[float]]:
    """One clip (a python list) -> windows of p samples, after right reflect padding written out by hand."""
    padded = list(samples)
    t = len(samples)
    extra = (-t) % p
    for i in range(extra):
        # reflect about the last sample, which is not repeated: x[T-2], x[T-3], ...
        padded.append(samples[t - 2 - i])
    return [padded[i : i + p] for i in range(0, len(padded), p)]


# ----------------------------------------------------------------------------------------------------------------------
# ipc-transinr and transinr (fidelity 2.1-2.3, 3.1)
# ----------------------------------------------------------------------------------------------------------------------


def hypernet_layers(config: HypernetINRConfig) -> list[tuple[int, int, int, int]]:
    """``(layer, fi, fo, G)`` of each modulated layer, in layer order; ``G`` (the layer's weight tokens) is the count
    given for it, in the order ``modulated_layers`` names the layers, clipped to its fan-out."""
    hcfg = config.hyponet
    hidden = list(hcfg.hidden_dim) * (hcfg.n_layer - 1) if len(hcfg.hidden_dim) == 1 else list(hcfg.hidden_dim)
    widths = [2 * hcfg.fourier.dim, *hidden, hcfg.output_dim]
    named = range(hcfg.n_layer) if config.modulated_layers is None else config.modulated_layers
    given = config.n_weight_tokens
    wanted = {k: given[0] if len(given) == 1 else given[i] for i, k in enumerate(named)}  # in the order named
    return [(k, widths[k], widths[k + 1], min(wanted[k], widths[k + 1])) for k in sorted(named)]


def hypernet_factors(params: dict, config: HypernetINRConfig, signal: torch.Tensor) -> dict[int, torch.Tensor]:
    """``A`` (B, fi, G) per modulated layer: patches, ``Linear + position``, the data tokens then the weight tokens
    through the transformer, its last ``G_total`` outputs cut per layer in layer order, ``LayerNorm + Linear``."""
    tok = config.tokenizer
    if tok.type == "image_patches":
        tokens = image_patches(signal, tok.patch_size, tok.padding)
    else:
        clips = [audio_patches(clip, tok.patch_size) for clip in signal[..., 0].tolist()]
        tokens = torch.tensor(clips, dtype=signal.dtype)
    x = linear(params["tokens"]["linear"], tokens) + params["tokens"]["position"]
    table = hypernet_layers(config)
    total = sum(g for *_, g in table)
    weight_tokens = params["weight_tokens"]
    assert weight_tokens.shape[0] == total
    seq = torch.cat([x, weight_tokens.unsqueeze(0).expand(x.shape[0], -1, -1)], 1)  # data tokens first
    out = transformer(params["transformer"], config.transformer, seq)[:, -total:]
    factors, start = {}, 0
    for k, _fi, _fo, g in table:
        head = params["heads"][str(k)]
        factors[k] = linear(head["linear"], layer_norm(head["norm"], out[:, start : start + g])).transpose(1, 2)
        start += g
    return factors


def hypernet_weights(params: dict, config: HypernetINRConfig, factors: dict, b: int) -> dict[int, torch.Tensor]:
    """Instance b's un-normalised weights: ipc-transinr's ``A U``, or transinr's ``W_base * tile(A)`` whose column j
    uses group j mod G."""
    weights = {}
    for k, _fi, fo, g in hypernet_layers(config):
        a = factors[k][b]  # (fi, G)
        if config.factorized:
            weights[k] = a @ params["factors"]["shared"][str(k)]
        else:
            tiled = a[:, [j % g for j in range(fo)]]
            weights[k] = params["hyponet"]["layers"][str(k)]["weight"] * tiled
    return weights


def hypernet(params: dict, config: HypernetINRConfig, signal: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The whole model: a (B, *S, C) signal and coordinates (N, D) or per instance (B, N, D) -> (B, N, C), the
    hyponet run instance by instance with its weights."""
    factors = hypernet_factors(params, config, signal)
    outs = []
    for b in range(signal.shape[0]):
        c = coords if coords.dim() == 2 else coords[b]
        outs.append(hyponet(params["hyponet"], config.hyponet, c, hypernet_weights(params, config, factors, b)))
    return torch.stack(outs, 0)


# ----------------------------------------------------------------------------------------------------------------------
# ipc-meta and learned-init (fidelity 2.4, 3.3, quirks 20-21)
# ----------------------------------------------------------------------------------------------------------------------


def meta_layers(config: MetaINRConfig) -> list[int]:
    """The modulated layers in layer order (every layer when none are named)."""
    return sorted(range(config.hyponet.n_layer) if config.modulated_layers is None else config.modulated_layers)


def meta_per_sample_mse(
    params: dict, config: MetaINRConfig, coords: torch.Tensor, factors: list[torch.Tensor], signal: torch.Tensor
) -> torch.Tensor:
    """Each sample's MSE (B,) with the factors ``V_b`` (one (B, fi, r) per modulated layer): ``W_b = V_b @ U`` (or
    ``V_b`` unfactorized), the hyponet sample by sample on coordinates (N, D) in the signal's dtype."""
    layers = meta_layers(config)
    if config.factorized:
        weights = [v @ params["factors"]["shared"][str(k)] for k, v in zip(layers, factors)]
    else:
        weights = factors
    coords = coords.to(signal.dtype)
    recon = torch.stack(
        [
            hyponet(params["hyponet"], config.hyponet, coords, {k: w[b] for k, w in zip(layers, weights)})
            for b in range(signal.shape[0])
        ]
    )
    return (recon.reshape(signal.shape) - signal).square().mean(dim=tuple(range(1, signal.dim())))


def meta_adapt(
    params: dict,
    config: MetaINRConfig,
    signal: torch.Tensor,
    coords: torch.Tensor,
    n_steps: int,
    *,
    detach_grad: bool = False,
    detach_scale: bool = False,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The inner loop on the full grid ``coords`` (*S, D): the adapted factors (a list of (B, fi, r)) and each
    sample's MSE before each step (B, T).

    ``V_b`` starts as ``V0`` repeated per sample; each step takes ``g = autograd.grad(sum_b MSE_b, V,
    create_graph=True)`` and ``V <- V - inner_lr * s_b * g`` with ``s_b = ||V_b||_F^2`` kept in the graph (1 without
    normalize_weight). ``detach_grad`` gives the first-order variant; ``detach_scale`` detaches ``s_b`` (the quirk-20
    control).
    """
    batch = signal.shape[0]
    flat = coords.flatten(0, -2)
    factors = [params["factors"]["init"][str(k)].unsqueeze(0).repeat(batch, 1, 1) for k in meta_layers(config)]
    history = []
    for _ in range(n_steps):
        per_sample = meta_per_sample_mse(params, config, flat, factors, signal)
        history.append(per_sample.detach())
        grads = torch.autograd.grad(per_sample.sum(), factors, create_graph=True)
        updated = []
        for v, g in zip(factors, grads):
            if detach_grad:
                g = g.detach()
            s = v.square().sum(dim=(1, 2), keepdim=True) if config.hyponet.normalize_weight else 1.0
            if detach_scale:
                s = s.detach()
            updated.append(v - config.inner_lr * s * g)
        factors = updated
    inner = torch.stack(history, dim=1) if history else torch.zeros(batch, 0, dtype=signal.dtype)
    return factors, inner


def meta_outer(
    params: dict, config: MetaINRConfig, signal: torch.Tensor, coords: torch.Tensor, n_steps: int, **kwargs
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The outer loss (the mean over samples of each sample's MSE with the adapted factors), the adapted factors and
    the inner MSE history; ``kwargs`` go to :func:`meta_adapt`."""
    factors, inner = meta_adapt(params, config, signal, coords, n_steps, **kwargs)
    loss = meta_per_sample_mse(params, config, coords.flatten(0, -2), factors, signal).mean()
    return loss, factors, inner


# ----------------------------------------------------------------------------------------------------------------------
# Novel views (fidelity 5.3, 5.4)
# ----------------------------------------------------------------------------------------------------------------------


def volume_composite(raw: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One ray at a time: rgb = sigmoid, sigma = relu, delta to the next depth (1e-3 after the last), alpha,
    transmittance as the running product of min(1, 1 - alpha + 1e-10) over the points *before* this one."""
    out = torch.empty(*raw.shape[:-2], 3, dtype=torch.float64)
    for index in torch.cartesian_prod(*(torch.arange(n) for n in raw.shape[:-2])).reshape(-1, raw.dim() - 2):
        ray = raw[tuple(index)].double()
        depth = z[index[-1]].double()
        colour, weight_sum, transmittance = torch.zeros(3, dtype=torch.float64), 0.0, 1.0
        for i in range(ray.shape[0]):
            delta = depth[i + 1] - depth[i] if i + 1 < ray.shape[0] else 1e-3
            alpha = 1 - math.exp(-max(float(ray[i, 3]), 0.0) * delta)
            weight = alpha * transmittance
            colour += weight * torch.sigmoid(ray[i, :3])
            weight_sum += weight
            transmittance *= min(1.0, 1 - alpha + 1e-10)
        out[tuple(index)] = colour + (1 - weight_sum)
    return out


def view_tokens(images, poses, focals, p):
    """Loops: for each instance, each view in order, each p x p patch row-major, the features channel-major over
    [r, g, b, o_x, o_y, o_z, d_x, d_y, d_z] (d from the pinhole formula, unnormalised), then kernel row, column."""
    batch, views, height, width, _ = images.shape
    out = []
    for b in range(batch):
        tokens = []
        for v in range(views):
            rotation, origin = poses[b, v, :, :3], poses[b, v, :, 3]
            fx, fy = focals[b, v].tolist()
            pixels = {}
            for r in range(height):
                for c in range(width):
                    d = rotation @ torch.tensor([(c + 0.5 - width / 2) / fx, -(r + 0.5 - height / 2) / fy, -1.0])
                    pixels[(r, c)] = [*images[b, v, r, c].tolist(), *origin.tolist(), *d.tolist()]
            for pr in range(height // p):
                for pc in range(width // p):
                    tokens.append(
                        [
                            pixels[(pr * p + kr, pc * p + kc)][channel]
                            for channel in range(9)
                            for kr in range(p)
                            for kc in range(p)
                        ]
                    )
        out.append(tokens)
    return torch.tensor(out)
