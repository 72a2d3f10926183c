"""Data tokenizers (fidelity 2.3) against the straightforward loop transcriptions in ``oracles``.

``image_patches``: ``nn.Unfold(p, stride=p, padding)`` with zero padding; each token's features are channel-major,
then kernel row, then kernel column; tokens are row-major over the patch grid. ``audio_patches``: windows of p samples,
reflect-padded on the right (torch's reflect mode: the edge sample is not repeated) when p does not divide T.
"""

from __future__ import annotations

import oracles
import pytest
import torch

from ginr.config import TokenizerConfig
from ginr.nn import tokenizers

# ----------------------------------------------------------------------------------------------------------------------
# image_patches
# ----------------------------------------------------------------------------------------------------------------------


def test_image_patches_178_p9_pad1_matches_loops():
    torch.manual_seed(0)
    images = torch.rand(2, 178, 178, 3)
    tokens = tokenizers.image_patches(images, 9, 1)
    assert tokens.shape == (2, 400, 243)
    assert torch.equal(tokens, oracles.image_patches(images, 9, 1))


def test_image_patches_512_p32_pad0_matches_loops():
    torch.manual_seed(1)
    images = torch.rand(1, 512, 512, 3)
    tokens = tokenizers.image_patches(images, 32, 0)
    assert tokens.shape == (1, 256, 3072)
    assert torch.equal(tokens, oracles.image_patches(images, 32, 0))


@pytest.mark.parametrize(
    "height, width, channels, p, pad",
    [
        (3, 3, 1, 1, 0),  # 1x1 patches: tokens are the pixels in row-major order
        (5, 5, 2, 3, 2),  # odd size, padding larger than needed for one side: 3x3 grid of 3x3 patches
        (7, 4, 3, 3, 1),  # non-square (rows != columns), odd sizes
        (4, 10, 1, 2, 0),
        (1, 7, 2, 3, 1),  # a single row of pixels, padded to a 1x3 patch grid
    ],
)
def test_image_patches_small_cases_match_loops(height, width, channels, p, pad):
    torch.manual_seed(height * 100 + width)
    images = torch.randn(2, height, width, channels)
    tokens = tokenizers.image_patches(images, p, pad)
    expected = oracles.image_patches(images, p, pad)
    assert tokens.shape == expected.shape == (2, ((height + 2 * pad) // p) * ((width + 2 * pad) // p), channels * p * p)
    assert torch.equal(tokens, expected)


def test_image_patches_layout_by_hand():
    """A 2x4 two-channel image cut into 2x2 patches, written out in full."""
    image = torch.arange(16.0).reshape(1, 2, 4, 2)  # (B, H, W, C): value = (row * 4 + col) * 2 + channel
    tokens = tokenizers.image_patches(image, 2, 0)
    # patch 0 covers columns 0-1, patch 1 columns 2-3; features: channel 0 (r0c0, r0c1, r1c0, r1c1), then channel 1
    expected = torch.tensor(
        [
            [[0.0, 2.0, 8.0, 10.0, 1.0, 3.0, 9.0, 11.0], [4.0, 6.0, 12.0, 14.0, 5.0, 7.0, 13.0, 15.0]],
        ]
    )
    assert torch.equal(tokens, expected)


def test_image_patches_zero_padding_by_hand():
    image = torch.ones(1, 1, 1, 1) * 7.0
    tokens = tokenizers.image_patches(image, 3, 1)  # the pixel sits in the centre of a 3x3 zero frame
    assert torch.equal(tokens, torch.tensor([[[0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]]]))


def test_image_patches_gradient_flows_to_pixels():
    images = torch.rand(1, 6, 6, 2, requires_grad=True)
    tokens = tokenizers.image_patches(images, 3, 0)
    weights = torch.randn_like(tokens)
    (tokens * weights).sum().backward()
    # every pixel belongs to exactly one patch (no padding), so its gradient is the weight of its feature
    assert torch.equal(images.grad.flatten().sort().values, weights.flatten().sort().values)


# ----------------------------------------------------------------------------------------------------------------------
# audio_patches
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples, p, count", [(16000, 200, 80), (48000, 200, 240)])
def test_audio_patches_paper_lengths(samples, p, count):
    torch.manual_seed(samples)
    audio = torch.randn(2, samples, 1)
    tokens = tokenizers.audio_patches(audio, p)
    assert tokens.shape == (2, count, p)
    # window k holds samples [k p, (k + 1) p) of the clip
    for b in range(2):
        for k in (0, 1, count // 2, count - 1):
            assert torch.equal(tokens[b, k], audio[b, k * p : (k + 1) * p, 0])
    assert torch.equal(tokens.flatten(1), audio[..., 0])


def test_audio_patches_windows_by_loop():
    audio = torch.randn(3, 40, 1)
    tokens = tokenizers.audio_patches(audio, 8)
    for b in range(3):
        assert tokens[b].tolist() == oracles.audio_patches(audio[b, :, 0].tolist(), 8)


def test_audio_patches_reflect_padding_written_by_hand():
    audio = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]).reshape(1, 10, 1)
    tokens = tokenizers.audio_patches(audio, 4)
    # T = 10, p = 4: two samples of right reflect padding, 9 is not repeated: ..., 8, 9 | 8, 7
    expected = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 8.0, 7.0]]])
    assert torch.equal(tokens, expected)
    tokens = tokenizers.audio_patches(audio, 3)  # T = 10, p = 3: one padded sample
    assert tokens[0, -1].tolist() == [9.0, 8.0, 7.0]
    assert tokens.shape == (1, 4, 3)


@pytest.mark.parametrize("samples, p", [(37, 8), (13, 5), (201, 200 // 4), (1000, 7)])
def test_audio_patches_reflect_padding_matches_loops(samples, p):
    torch.manual_seed(samples)
    audio = torch.randn(2, samples, 1)
    tokens = tokenizers.audio_patches(audio, p)
    assert tokens.shape == (2, -(-samples // p), p)
    for b in range(2):
        assert tokens[b].tolist() == oracles.audio_patches(audio[b, :, 0].tolist(), p)


# ----------------------------------------------------------------------------------------------------------------------
# tokenize, n_tokens, token_dim
# ----------------------------------------------------------------------------------------------------------------------


def test_tokenize_dispatches_on_type():
    images = torch.rand(2, 12, 12, 3)
    config = TokenizerConfig(type="image_patches", patch_size=4, padding=0, n_tokens=9)
    assert torch.equal(tokenizers.tokenize(config, images), oracles.image_patches(images, 4, 0))
    audio = torch.randn(2, 30, 1)
    config = TokenizerConfig(type="audio_patches", patch_size=7, padding=0, n_tokens=5)
    tokens = tokenizers.tokenize(config, audio)
    assert tokens[1].tolist() == oracles.audio_patches(audio[1, :, 0].tolist(), 7)
    with pytest.raises(ValueError, match="--model.tokenizer.type"):
        tokenizers.tokenize(TokenizerConfig(type="vqgan"), images)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape, p, pad, expected",
    [
        ((178, 178), 9, 1, 400),
        ((512, 512), 32, 0, 256),
        ((1024, 1024), 32, 0, 1024),
        ((256, 256), 16, 0, 256),
        ((8, 12), 4, 0, 6),
        ((7, 4), 3, 1, 6),
    ],
)
def test_n_tokens_images(shape, p, pad, expected):
    config = TokenizerConfig(type="image_patches", patch_size=p, padding=pad)
    assert tokenizers.n_tokens(config, shape) == expected
    tokens = tokenizers.image_patches(torch.zeros(1, *shape, 1), p, pad)
    assert tokens.shape[1] == expected


@pytest.mark.parametrize("samples, p, expected", [(16000, 200, 80), (48000, 200, 240), (16001, 200, 81), (10, 4, 3)])
def test_n_tokens_audio(samples, p, expected):
    config = TokenizerConfig(type="audio_patches", patch_size=p, padding=0)
    assert tokenizers.n_tokens(config, (samples,)) == expected
    assert tokenizers.audio_patches(torch.zeros(1, samples, 1), p).shape[1] == expected


@pytest.mark.parametrize(
    "shape, p, pad",
    [((178, 178), 9, 0), ((512, 512), 32, 1), ((8, 10), 4, 0), ((10, 8), 4, 0), ((178, 178), 11, 1)],
)
def test_n_tokens_refuses_a_patch_size_that_does_not_tile(shape, p, pad):
    config = TokenizerConfig(type="image_patches", patch_size=p, padding=pad)
    with pytest.raises(ValueError, match="--model.tokenizer.patch-size") as info:
        tokenizers.n_tokens(config, shape)
    assert f"patch-size={p}" in str(info.value)
    assert "--model.tokenizer.padding" in str(info.value)


def test_token_dim():
    assert tokenizers.token_dim(TokenizerConfig(type="image_patches", patch_size=9, padding=1), 3) == 243
    assert tokenizers.token_dim(TokenizerConfig(type="image_patches", patch_size=32, padding=0), 3) == 3072
    assert tokenizers.token_dim(TokenizerConfig(type="image_patches", patch_size=4, padding=0), 1) == 16
    assert tokenizers.token_dim(TokenizerConfig(type="audio_patches", patch_size=200, padding=0), 1) == 200
    # token_dim agrees with what the tokenizer produces
    config = TokenizerConfig(type="image_patches", patch_size=3, padding=1)
    assert tokenizers.tokenize(config, torch.zeros(1, 7, 4, 2)).shape[-1] == tokenizers.token_dim(config, 2)
    config = TokenizerConfig(type="audio_patches", patch_size=11, padding=0)
    assert tokenizers.tokenize(config, torch.zeros(1, 50, 1)).shape[-1] == tokenizers.token_dim(config, 1)
