"""Neural networks for value-based agents: a multilayer perceptron and the Nature DQN convolutional net.

Defined in chapter 6 (DQN). Chapter 7 adds its heads (noisy, dueling, categorical) beside these: each
network here is a *torso* that makes features followed by a linear *head* that maps features to one
value per action, so an extension swaps the head and keeps the torso.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlbook.config import check_int


class MLP(nn.Module):
    """A fully connected network: ``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim``.

    Args:
        in_dim: size of one (flat) input vector.
        out_dim: size of the output (the number of actions for a Q-network).
        hidden: sizes of the hidden layers; ``()`` gives a linear model.
        activation: the activation class put after every hidden layer.

    ``forward`` takes ``(n, in_dim)`` (any floating or integer dtype; integers are converted to float32)
    and returns ``(n, out_dim)`` float32.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (128, 128),
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        in_dim = check_int("in_dim", in_dim, 1)
        out_dim = check_int("out_dim", out_dim, 1)
        hidden = tuple(check_int(f"hidden[{i}]", h, 1) for i, h in enumerate(hidden))
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        size = in_dim
        for h in hidden:
            layers += [nn.Linear(size, h), activation()]
            size = h
        #: Hidden layers (empty for a linear model); ``features_dim`` is their output size.
        self.torso = nn.Sequential(*layers)
        self.features_dim = size
        #: The output layer (chapter 7 replaces it with dueling / noisy / categorical heads).
        self.head = nn.Linear(size, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLP expects input of shape (n, {self.in_dim}), got {tuple(x.shape)}")
        if x.dtype != self.head.weight.dtype:  # integers, float64 observations, ...
            x = x.to(self.head.weight.dtype)
        return self.head(self.torso(x))


class NatureCNN(nn.Module):
    """The convolutional Q-network of Mnih et al. (2015) for stacks of 84x84 Atari frames.

    Three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), a 512-unit hidden layer and a
    linear head with one output per action.

    Args:
        in_channels: frames per stacked observation (4 in the paper).
        n_actions: number of discrete actions (outputs).
        hidden: size of the fully connected hidden layer.
        frame_size: height and width of the square frames (84).

    ``forward`` takes uint8 frames ``(n, in_channels, frame_size, frame_size)`` -- they stay uint8 on the
    way to the device and are converted to float and scaled by 1/255 here, on the device -- or floats
    already in [0, 1]. It returns ``(n, n_actions)`` float32.
    """

    def __init__(self, in_channels: int = 4, n_actions: int | None = None, hidden: int = 512,
                 frame_size: int = 84):
        super().__init__()
        if n_actions is None or not isinstance(n_actions, int) or n_actions < 1:
            raise ValueError(f"n_actions must be a positive integer, got {n_actions!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        if not isinstance(frame_size, int) or frame_size < 36:
            raise ValueError(f"frame_size must be an integer >= 36 (the convolutions need it), got {frame_size!r}")
        self.in_channels = in_channels
        self.n_actions = n_actions
        self.frame_size = frame_size
        conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            conv_out = conv(torch.zeros(1, in_channels, frame_size, frame_size)).shape[1]
        #: Convolutions plus the hidden layer; ``features_dim`` is its output size.
        self.torso = nn.Sequential(*conv, nn.Linear(conv_out, hidden), nn.ReLU())
        self.features_dim = hidden
        #: The output layer (chapter 7 replaces it with dueling / noisy / categorical heads).
        self.head = nn.Linear(hidden, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.frame_size, self.frame_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"NatureCNN expects input of shape (n, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float().mul_(1.0 / 255.0)
        elif not torch.is_floating_point(x):
            raise TypeError(f"NatureCNN expects uint8 frames or floats in [0, 1], got dtype {x.dtype}")
        return self.head(self.torso(x))


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``parameters`` in place so that their global L2 norm is at most ``max_norm``.

    The same result as ``torch.nn.utils.clip_grad_norm_`` for parameters on one device, in a few fused
    ``foreach`` calls: on a CPU with a small network that is 2-3 times faster, which matters when the
    gradient step itself takes a millisecond. Returns the norm before clipping (a 0-dim tensor, no sync)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm
