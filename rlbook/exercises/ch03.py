"""Checks for the exercises of chapter 3 (PyTorch in one chapter).

Usage in the chapter: ``from rlbook.exercises import ch03``, then
``ch03.linear_regression.check(line)``. Each check below is an :class:`~rlbook.exercises.Exercise`:
its ``check`` method prints or raises, and the function documented here returns the message of a
correct answer.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import torch
from torch import nn

from rlbook.exercises import WrongAnswer, attempted, exercise

#: The point at which "A gradient by hand" asks for the derivative of g.
G_AT = 2.0
#: The line that the data of "Linear regression" follow, how many points, and their noise.
LINE_SLOPE, LINE_INTERCEPT, LINE_POINTS, LINE_NOISE = 3.0, 1.0, 200, 0.05
#: How close the fitted slope and intercept must come to the least-squares fit.
LINE_TOLERANCE = 0.05


def g(x: Any) -> Any:
    """The function of "A gradient by hand", ``g(x) = x^3 + 2x`` (numbers or tensors)."""
    return x**3 + 2 * x


def _number(value: Any, name: str) -> float:
    try:
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    except (TypeError, ValueError, RuntimeError):
        raise WrongAnswer(f"{name} should be a number (or a one-element tensor), got {value!r}") from None


@exercise("A gradient by hand", fill=("g_prime_by_hand", "g_prime_autograd"))
def gradient_by_hand(g_prime_by_hand: Any, g_prime_autograd: Any) -> str:
    """Check ``g'(2)`` for ``g(x) = x^3 + 2x``, worked out on paper and with autograd."""
    x = torch.tensor(G_AT, dtype=torch.float64, requires_grad=True)
    g(x).backward()
    expected = x.grad.item()
    by_hand = _number(g_prime_by_hand, "g_prime_by_hand")
    with_autograd = _number(g_prime_autograd, "g_prime_autograd")
    if abs(by_hand - expected) > 1e-6:
        raise WrongAnswer(f"g_prime_by_hand is {by_hand:g}, which is not g'({G_AT:g}). Differentiate term by "
                          f"term (the derivative of x^n is n x^(n-1)), then put x = {G_AT:g}.")
    if abs(with_autograd - 2 * expected) <= 1e-4:
        raise WrongAnswer(f"g_prime_autograd is {with_autograd:g}, twice g'({G_AT:g}): gradients accumulate, "
                          f"and backward() ran twice on the same x. Make x afresh before backward().")
    if abs(with_autograd - expected) > 1e-4:
        raise WrongAnswer(f"g_prime_autograd is {with_autograd:g}, not g'({G_AT:g}). Make x a tensor with "
                          f"requires_grad=True, compute g(x), call .backward() on it and read x.grad.")
    return f"g'({G_AT:g}) = {expected:g}, by hand and by autograd."


def _has_loop(func: Any) -> bool | None:
    """Whether the source of ``func`` has a for or while loop or a comprehension (``None``: no source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return None
    return any(isinstance(node, (ast.For, ast.While, ast.comprehension)) for node in ast.walk(tree))


@exercise("Broadcasting instead of loops", fill=("pairwise_sq_dist",))
def pairwise_distances(pairwise_sq_dist: Any) -> str:
    """Check ``pairwise_sq_dist(a, b)``: for ``a`` of shape ``(n, d)`` and ``b`` of shape ``(m, d)``
    the ``(n, m)`` tensor of squared distances ``|a_i - b_j|^2``, with no Python loop."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen)
    out = attempted(pairwise_sq_dist(a, b))
    if not isinstance(out, torch.Tensor):
        raise WrongAnswer(f"pairwise_sq_dist returned a {type(out).__name__}; it should return a tensor")
    if tuple(out.shape) != (5, 4):
        raise WrongAnswer(f"for a of shape (5, 3) and b of shape (4, 3) pairwise_sq_dist returned shape "
                          f"{tuple(out.shape)}; entry [i, j] is the distance of a[i] to b[j], so (5, 4)")
    expected = torch.cdist(a, b) ** 2
    if not torch.allclose(out, expected, atol=1e-4):
        if torch.allclose(out, expected.sqrt(), atol=1e-4):
            raise WrongAnswer("pairwise_sq_dist returns the distances; the exercise asks for their squares")
        i, j = divmod(int((out - expected).abs().argmax()), 4)
        raise WrongAnswer(f"entry [{i}, {j}] is {out[i, j].item():.4f}, but |a[{i}] - b[{j}]|^2 is "
                          f"{expected[i, j].item():.4f}")
    if _has_loop(pairwise_sq_dist):
        raise WrongAnswer("the values are right, but pairwise_sq_dist uses a Python loop (a for, a while "
                          "or a comprehension). Let broadcasting pair the rows: a of shape (n, 1, d) "
                          "against b of shape (1, m, d) gives all n x m differences at once.")
    return "pairwise_sq_dist gives every squared distance, without a Python loop."


def line_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The data of "Linear regression": ``LINE_POINTS`` points ``x`` in ``[-2, 2]`` and
    ``y = 3 x + 1`` plus Gaussian noise of deviation ``LINE_NOISE``.

    Returns:
        ``(xs, ys)``, two float32 tensors of shape ``(LINE_POINTS, 1)``.
    """
    gen = torch.Generator().manual_seed(seed)
    xs = torch.rand(LINE_POINTS, 1, generator=gen) * 4 - 2
    ys = LINE_SLOPE * xs + LINE_INTERCEPT + LINE_NOISE * torch.randn(LINE_POINTS, 1, generator=gen)
    return xs, ys


@exercise("Linear regression", fill=("line",))
def linear_regression(line: Any) -> str:
    """Check ``line``, an ``nn.Linear(1, 1)`` fitted to :func:`line_data` with the mean squared
    error: its slope and intercept must be within 0.05 of the least-squares fit."""
    if not isinstance(line, nn.Linear) or (line.in_features, line.out_features) != (1, 1):
        raise WrongAnswer(f"line should be an nn.Linear(1, 1), got {line!r}")
    if line.bias is None:
        raise WrongAnswer("line has no bias, so it cannot learn the intercept: use nn.Linear(1, 1)")
    xs, ys = line_data()
    design = torch.cat([xs, torch.ones_like(xs)], dim=1).double()
    best_slope, best_intercept = torch.linalg.lstsq(design, ys.double()).solution.flatten().tolist()
    slope, intercept = line.weight.item(), line.bias.item()
    for name, mine, best in (("slope", slope, best_slope), ("intercept", intercept, best_intercept)):
        if abs(mine - best) > LINE_TOLERANCE:
            raise WrongAnswer(f"the {name} is {mine:.3f}, {abs(mine - best):.2f} away from the least-squares "
                              f"{name}. Train for more steps or with a larger learning rate, and check the "
                              f"loss falls.")
    return f"slope {slope:.3f} and intercept {intercept:.3f}, as least squares gives."
