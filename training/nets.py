"""The VAE networks: a convolutional VAE and an MLP VAE, both built from `ModelConfig`.

Only the model is defined here. A conv VAE's depth follows the input size when
`model.channels = "auto"` (`auto_channels`): 28x28 gets [32, 64] (a 7x7 grid), 64x64
[32, 64, 128], 128x128 [32, 64, 128, 256], 64x128 four blocks (a 4x8 grid).

The encoder maps an image batch to the mean and log-variance of q(z|x); the decoder maps
latents to the likelihood's parameters (Bernoulli logits, or a Gaussian mean with a
learned or fixed log std per channel).
Neither holds a random op: the reparameterisation noise is passed in, so the exported
ONNX graphs are deterministic.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from training.config import DataConfig, ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}
GRID = 8  # "auto" halves H and W until the longer side is at most this
BASE_WIDTH, MAX_WIDTH = 32, 256  # "auto" widths: 32, 64, 128, 256, 256, ...


def auto_channels(height: int, width: int) -> list[int]:
    """Conv widths for an input size: one block per halving, while the longer side exceeds
    GRID and both sides are even; widths double from BASE_WIDTH up to MAX_WIDTH."""
    blocks = 0
    while max(height, width) > GRID and height % 2 == 0 and width % 2 == 0:
        height, width, blocks = height // 2, width // 2, blocks + 1
    return [min(BASE_WIDTH * 2**i, MAX_WIDTH) for i in range(blocks)]


def conv_channels(model: ModelConfig, data: DataConfig) -> list[int]:
    """The conv widths `model.channels` names, "auto" resolved for the input size."""
    channels = auto_channels(*_size(data)) if model.channels == "auto" else model.channels
    if not channels:
        raise ValueError(f"no conv block fits a {data.height}x{data.width} input: set model.channels or model.arch=mlp")
    return channels


def _size(data: DataConfig) -> tuple[int, int]:
    if data.channels is None or data.height is None or data.width is None:
        raise ValueError("data.channels, data.height and data.width must be known to build the network")
    return data.height, data.width


def _mlp(widths: list[int], act: type[nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), act()]
    return layers


class Encoder(nn.Module):
    """q(z|x): image (N, C, H, W) in [0, 1] -> mean, log_var (N, D)."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        act = _ACTIVATIONS[model.activation]
        height, width = _size(data)
        layers: list[nn.Module] = []
        c_in = int(data.channels or 1)
        if model.arch == "conv":
            widths = conv_channels(model, data)
            for c_out in widths:
                # a 3x3 conv to mix, then a strided 4x4 conv to halve H and W
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), act()]
                layers += [nn.Conv2d(c_out, c_out, 4, stride=2, padding=1), act()]
                c_in = c_out
            factor = 2 ** len(widths)
            flat = c_in * (height // factor) * (width // factor)
        else:
            flat = c_in * height * width
        layers.append(nn.Flatten())
        layers += _mlp([flat, *model.hidden], act)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(model.hidden[-1] if model.hidden else flat, 2 * model.latent_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.head(self.body(image)).chunk(2, dim=1)  # (N, D) each
        return mean, log_var


class Decoder(nn.Module):
    """p(x|z): z (N, D) -> the likelihood's parameters (N, C, H, W)."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        height, width_px = _size(data)
        c_out_final = int(data.channels or 1)
        self.out_shape = (c_out_final, height, width_px)
        act = _ACTIVATIONS[model.activation]
        layers = _mlp([model.latent_dim, *model.hidden], act)
        width = model.hidden[-1] if model.hidden else model.latent_dim
        if model.arch == "conv":
            channels = list(reversed(conv_channels(model, data)))
            factor = 2 ** len(channels)
            grid = (channels[0], height // factor, width_px // factor)
            layers += [nn.Linear(width, math.prod(grid)), act(), nn.Unflatten(1, grid)]
            for c_in, c_out in zip(channels, [*channels[1:], channels[-1]], strict=True):
                layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), act()]
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), act()]
            layers.append(nn.Conv2d(channels[-1], c_out_final, 3, padding=1))
        else:
            layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Unflatten(1, self.out_shape)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)  # (N, C, H, W): logits, or a Gaussian mean


class VAE(nn.Module):
    """Encoder, decoder and (for a Gaussian decoder) its log std per channel."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        self.config = model
        self.encoder = Encoder(model, data)
        self.decoder = Decoder(model, data)
        log_scale = torch.full((int(data.channels or 1),), model.gaussian_log_scale)
        # Trainable only where the loss uses it: DistributedDataParallel insists every
        # trainable parameter gets a gradient in every step.
        self.log_scale = nn.Parameter(log_scale, requires_grad=model.learn_scale and model.likelihood == "gaussian")

    @staticmethod
    def reparameterize(mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = mean + std * eps, with eps ~ N(0, I) drawn by the caller."""
        return mean + torch.exp(0.5 * log_var) * eps

    def forward(self, image: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(image)
        params = self.decoder(self.reparameterize(mean, log_var, eps))
        return params, mean, log_var


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
