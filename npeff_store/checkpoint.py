"""Checkpoints of a running decomposition: ``checkpoint/state.npz`` in its output directory holds W,
H, the next step, the losses so far, the settings and the store's identity. Written atomically, so a
killed run leaves the previous checkpoint or the new one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from npeff.errors import CorruptError
from npeff.store import _files

CHECKPOINT_DIR = "checkpoint"
STATE = "state.npz"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The state of a decomposition after ``step`` steps.

    Attributes:
        W: ``[m, C]`` coefficients; H: ``[C, d]`` components (both as computed, float64 on load).
        step: the number of steps done.
        losses: the loss of each step done.
        config: the settings the run was made with (a dict).
        fingerprint, num_examples: the store's fingerprint and size.
    """

    W: np.ndarray
    H: np.ndarray
    step: int
    losses: list[float]
    config: dict
    fingerprint: str
    num_examples: int


def checkpoint_path(directory: Path) -> Path:
    """Where the checkpoint of the decomposition written to ``directory`` lives."""
    return Path(directory) / CHECKPOINT_DIR / STATE


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` into ``directory`` atomically; returns its path."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _files.atomic_write(path, "wb", fsync=False) as handle:
        np.savez(handle, W=checkpoint.W, H=checkpoint.H, step=np.int64(checkpoint.step),
                 losses=np.asarray(checkpoint.losses, dtype=np.float64),
                 config=np.str_(json.dumps(checkpoint.config, sort_keys=True)),
                 fingerprint=np.str_(checkpoint.fingerprint), m=np.int64(checkpoint.num_examples))
    return path


def load_checkpoint(directory: Path) -> Checkpoint:
    """The checkpoint in ``directory``; :class:`CorruptError` when it cannot be read."""
    path = checkpoint_path(directory)
    try:
        with np.load(path, allow_pickle=False) as data:
            return Checkpoint(W=data["W"], H=data["H"], step=int(data["step"]),
                              losses=[float(x) for x in data["losses"]], config=json.loads(str(data["config"])),
                              fingerprint=str(data["fingerprint"]), num_examples=int(data["m"]))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CorruptError(f"the checkpoint {path} cannot be read: {error}") from None
