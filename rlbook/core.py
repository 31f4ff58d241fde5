"""Small pieces every chapter uses: the quick/full budget, seeding and device choice."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

QUICK_ENV_VAR = "RLBOOK_QUICK"


def is_quick() -> bool:
    """True when ``RLBOOK_QUICK`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    value = os.environ.get(QUICK_ENV_VAR, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{QUICK_ENV_VAR}={value!r} is not understood; use 1 (quick) or 0 (full)")


def budget(full, quick):
    """Pick the training budget for this run.

    Every training cell of the book calls ``budget(full=..., quick=...)``. Readers get ``full``;
    the tests and CI set ``RLBOOK_QUICK=1`` and get ``quick`` so that every notebook runs in seconds.
    Both values may be of any type (step counts, seed lists, dataclasses of settings).

    >>> budget(full=50_000, quick=500)  # doctest: +SKIP
    50000
    """
    return quick if is_quick() else full


def seed_everything(seed: int | None) -> np.random.Generator:
    """Seed Python's, NumPy's and PyTorch's global generators and return a fresh NumPy ``Generator``.

    Library code never relies on the global NumPy generator: it takes the returned ``Generator``
    (or its own, made from the same seed). The global seeds matter for network initialisation, which
    draws from PyTorch's global generator. ``seed=None`` leaves the global state alone.
    """
    if seed is not None:
        from rlbook.config import check_seed

        seed = check_seed("seed", seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else is passed to ``torch.device`` and must
    exist here: a GPU that this machine (or this build of PyTorch) lacks is a :class:`ValueError` saying so, not
    an error from deep inside PyTorch at the first tensor."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {str(device)!r} is not available: {why}; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} is not available: this machine has "
                             f"{torch.cuda.device_count()} GPU(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} is not available (Apple's Metal backend is missing here); use "
                         "'cpu' or 'auto'")
    return device
