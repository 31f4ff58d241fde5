"""Checkpoint files: written atomically, sealed with a digest, read without unpickling anything.

A checkpoint is a small text header followed by a PyTorch-serialised payload::

    RLBOOK-CHECKPOINT 2
    sha256 <64 hex digits of the payload bytes>
    size <payload length in bytes>
    <blank line>
    <payload: torch.save of a dict of tensors, numbers, strings, lists and dicts>

* **Integrity.** Loading recomputes the SHA-256 digest of the payload and refuses the file when it differs
  from the header's, so a truncated or altered file (a disk error, a copy cut short, a stray edit) is never
  loaded into an agent. Every single-byte change anywhere in the file is caught: in the payload by the digest,
  in the header by the header's own checks.
* **Atomic writes.** The file is written under a temporary name in the same folder, flushed to disk, then
  renamed over the old one. A process killed while saving leaves the previous checkpoint intact.
* **Safe loading.** The payload is read by ``torch.load`` with ``weights_only=True``: tensors and plain
  values only, never arbitrary pickled objects.

Defined in chapter 6 (DQN), used by every agent's ``save`` / ``load`` and by the trainer's
:class:`~rlbook.train.Checkpoint` plugin.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

MAGIC = b"RLBOOK-CHECKPOINT 2\n"
PAYLOAD_FORMAT = "rlbook-checkpoint-v2"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not an rlbook checkpoint, corrupted, or written for another agent."""


# ---------------------------------------------------------------------- files
def write_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Serialise ``payload`` and write it to ``path`` atomically, with its digest in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = MAGIC + f"sha256 {hashlib.sha256(body).hexdigest()}\nsize {len(body)}\n\n".encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a file written by :func:`write_checkpoint`; returns its payload dict.

    Raises ``FileNotFoundError`` when there is no file and :class:`CheckpointError` (a ``ValueError``) when
    the file is not an rlbook checkpoint or its contents do not match its digest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if data.startswith(b"PK"):
            raise CheckpointError(f"{path} is not an rlbook checkpoint: it looks like a plain torch.save file "
                                  "(rlbook checkpoints start with an 'RLBOOK-CHECKPOINT 2' header)")
        raise CheckpointError(f"{path} is not an rlbook checkpoint (no 'RLBOOK-CHECKPOINT 2' header)")
    try:
        end = data.index(b"\n\n", len(MAGIC)) + 2
        fields = dict(line.split(b" ", 1) for line in data[len(MAGIC):end - 2].split(b"\n"))
        digest = fields[b"sha256"].decode("ascii")
        size = int(fields[b"size"])
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupted: its header cannot be read ({exc})") from exc
    if set(fields) != {b"sha256", b"size"} or len(digest) != 64 or str(size).encode() != fields[b"size"]:
        raise CheckpointError(f"{path} is corrupted: its header is malformed")
    body = data[end:]
    if len(body) != size:
        raise CheckpointError(f"{path} is corrupted: it holds {len(body)} payload bytes, its header says {size} "
                              "(a truncated copy or an interrupted transfer?)")
    if hashlib.sha256(body).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupted: the SHA-256 digest of its contents does not match the one "
                              "written with it (the file was altered or damaged after it was saved)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # a digest match makes this unlikely, but a foreign writer could still get here
        raise CheckpointError(f"{path} could not be read safely: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
        raise CheckpointError(f"{path} is not an rlbook checkpoint (payload format {PAYLOAD_FORMAT} expected)")
    return payload


# ---------------------------------------------------------------------- spaces
def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A plain description of a space, enough to rebuild Discrete, Box, MultiBinary and MultiDiscrete."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": torch.from_numpy(np.array(space.low)), "high": torch.from_numpy(np.array(space.high))}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": list(np.atleast_1d(space.n).tolist())}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": torch.from_numpy(np.array(space.nvec))}
    return {"type": type(space).__name__, "repr": repr(space)}


def space_from_dict(d: dict[str, Any]) -> gym.Space | None:
    """The space :func:`space_to_dict` described (``None`` for a kind it cannot rebuild)."""
    kind = d.get("type")
    if kind == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d["start"])
    if kind == "Box":
        return gym.spaces.Box(d["low"].numpy(), d["high"].numpy(), shape=tuple(d["shape"]), dtype=np.dtype(d["dtype"]))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(d["n"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(d["nvec"].numpy())
    return None


def space_key(d: dict[str, Any]) -> tuple:
    """What must match for an agent to take a checkpoint made for another space: kind, size, shape and dtype
    (not Box bounds, which wrappers often change without changing what the agent sees)."""
    kind = d.get("type")
    if kind == "Discrete":
        return (kind, d["n"], d["start"])
    if kind == "Box":
        return (kind, tuple(d["shape"]), d["dtype"])
    if kind == "MultiBinary":
        return (kind, tuple(d["n"]))
    if kind == "MultiDiscrete":
        return (kind, tuple(d["nvec"].tolist()))
    return (kind, d.get("repr"))


def describe_space(d: dict[str, Any]) -> str:
    space = space_from_dict(d)
    return repr(space) if space is not None else d.get("repr", str(d.get("type")))


__all__ = ["CheckpointError", "read_checkpoint", "space_from_dict", "space_to_dict", "write_checkpoint"]
