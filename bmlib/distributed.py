"""Distributed helpers that also work with no process group (single process, notebooks).

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and starts a process
group (``nccl`` on CUDA, ``gloo`` on CPU). Without them every helper answers as a single
process would: rank 0, world size 1, barriers and reductions are no-ops. So the same training
code runs in a notebook, in a script and under ``torchrun``::

    info = init_distributed()            # DistInfo(rank=0, world_size=1, ...) without torchrun
    ...
    if is_main_process():
        save(...)
    cleanup()
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "barrier",
    "all_reduce_mean",
    "broadcast_object",
    "cleanup",
]

_ENV_KEYS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly absent) process group.

    Attributes
    ----------
    rank : int
        Global rank (0 without a process group).
    world_size : int
        Number of processes (1 without a process group).
    local_rank : int
        Rank on this node; selects the GPU (``cuda:<local_rank>``).
    is_distributed : bool
        True when a process group with more than one process is running.
    device : torch.device
        The device this process should train on (``cuda:<local_rank>`` when CUDA is
        available, else CPU).
    backend : str or None
        ``"nccl"`` or ``"gloo"`` when distributed, else None.
    """

    rank: int
    world_size: int
    local_rank: int
    is_distributed: bool
    device: torch.device
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and saves)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"expected an integer in environment variable {name}, got {value!r}") from err


def _default_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Start (or join) the process group described by torchrun's environment variables.

    Idempotent: when a process group already exists it is described, not re-created. Without
    torchrun's variables (``WORLD_SIZE`` unset or 1) nothing is started and a single-process
    :class:`DistInfo` is returned.

    Parameters
    ----------
    backend : {"nccl", "gloo"}, optional
        Defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``.
    timeout_s : float, default 1800
        Collective timeout in seconds.

    Returns
    -------
    DistInfo
    """
    if backend is not None and backend not in ("nccl", "gloo"):
        raise ValueError(f"expected backend 'nccl', 'gloo' or None, got {backend!r}")
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        device = _default_device(local_rank)
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), local_rank, dist.get_world_size() > 1, device, dist.get_backend()
        )
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(0, 1, 0, False, _default_device(0), None)
    missing = [k for k in _ENV_KEYS if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but the torchrun variables {missing} are missing; "
            "launch with `torchrun --nproc_per_node=N -m bmlib pretrain ...`"
        )
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of torch")
    rank = _env_int("RANK", 0)
    device = _default_device(local_rank)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    import datetime

    dist.init_process_group(
        backend=backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s)
    )
    return DistInfo(rank, world_size, local_rank, True, device, backend)


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank; 0 without a process group."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes; 1 without a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """Rank on this node (``LOCAL_RANK``); 0 without torchrun."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """True on rank 0, and always without a process group."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process; a no-op without a process group."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a new tensor; the input is left unchanged).

    Without a process group the input is returned as a copy.

    Parameters
    ----------
    tensor : Tensor
        Any shape; floating point.

    Returns
    -------
    Tensor
        Same shape and device.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got dtype {tensor.dtype}")
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from rank ``src`` to every process; identity without a group."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Tear the process group down (a no-op when none is running)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
