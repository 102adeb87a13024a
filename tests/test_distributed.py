"""Tests of bmlib.distributed, and of fit under DDP (two CPU processes, gloo)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bmlib import distributed as bdist

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


def test_single_process_answers(no_torchrun_env: None) -> None:
    info = bdist.init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.is_distributed) == (0, 1, 0, False)
    assert info.is_main and info.backend is None
    assert info.device == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    assert bdist.get_rank() == 0 and bdist.get_world_size() == 1 and bdist.is_main_process()
    assert not bdist.is_distributed()
    bdist.barrier()
    bdist.cleanup()
    t = torch.tensor([1.0, 3.0])
    out = bdist.all_reduce_mean(t)
    torch.testing.assert_close(out, t)
    out += 1
    torch.testing.assert_close(t, torch.tensor([1.0, 3.0]))  # the input is not modified
    assert bdist.broadcast_object({"a": 1}) == {"a": 1}


def test_checks(monkeypatch: pytest.MonkeyPatch, no_torchrun_env: None) -> None:
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        bdist.all_reduce_mean([1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a floating-point tensor, got dtype torch.int64"):
        bdist.all_reduce_mean(torch.tensor([1]))
    with pytest.raises(ValueError, match="expected backend 'nccl', 'gloo' or None, got 'mpi'"):
        bdist.init_distributed(backend="mpi")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"WORLD_SIZE=2 but the torchrun variables \['RANK', 'MASTER_ADDR'"):
        bdist.init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="expected an integer in environment variable WORLD_SIZE, got 'two'"):
        bdist.init_distributed()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# DDP: two processes with gloo (spawned; the worker must be importable at module level)
# --------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from bmlib.engine import fit
    from test_engine import SMALL, ListDataset, ar_series

    info = bdist.init_distributed()
    try:
        data = ListDataset(ar_series(32, seed=2))
        root_path = Path(root)
        calls: list[dict] = []
        straight = fit(data, epochs=2, out_dir=root_path / "straight", callback=calls.append, **SMALL)
        fit(data, epochs=2, out_dir=root_path / "resumed", max_steps=3, **SMALL)
        resumed = fit(data, epochs=2, out_dir=root_path / "resumed", resume="auto", **SMALL)
        result: dict[str, Any] = {
            "info": [info.rank, info.world_size, info.local_rank, int(info.is_distributed), info.backend],
            "params": {n: p.detach().clone() for n, p in straight.pretrainer.named_parameters()},
            "loss": straight.history["loss"].tolist(),
            "resumed_loss": resumed.history["loss"].tolist(),
            "n_callbacks": len(calls),
            "mean_rank": bdist.all_reduce_mean(torch.tensor([float(rank)])).item(),
            "broadcast": bdist.broadcast_object({"from": rank}),
            "checkpoint": str(straight.checkpoint_path),
        }
        torch.save(result, root_path / f"rank{rank}.pt")
    finally:
        bdist.cleanup()


def spawn_two(worker: Any, root: Path) -> None:
    """Run ``worker(rank, 2, port, root)`` in two processes; a new port if another process took it."""
    for attempt in range(3):
        try:
            mp.spawn(worker, args=(2, free_port(), str(root)), nprocs=2, join=True)
            return
        except mp.ProcessRaisedException as err:  # the port was free when chosen, not when bound
            if "EADDRINUSE" not in str(err) or attempt == 2:
                raise


@pytest.mark.slow
def test_fit_under_ddp_with_two_processes(tmp_path: Path) -> None:
    spawn_two(_ddp_worker, tmp_path)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["info"] == [0, 2, 0, 1, "gloo"] and r1["info"] == [1, 2, 1, 1, "gloo"]
    assert r0["mean_rank"] == r1["mean_rank"] == 0.5
    assert r0["broadcast"] == r1["broadcast"] == {"from": 0}
    # 32 scans / 2 processes / batch 8 = 2 steps per epoch, 2 epochs
    assert len(r0["loss"]) == 4
    # logged losses are averaged over processes: the same history on both ranks
    np.testing.assert_allclose(r0["loss"], r1["loss"], rtol=1e-6)
    # DDP kept the replicas identical, online and EMA target alike
    assert r0["params"].keys() == r1["params"].keys()
    assert any(k.startswith("target_") for k in r0["params"])
    for name, p0 in r0["params"].items():
        torch.testing.assert_close(r1["params"][name], p0, rtol=1e-6, atol=1e-7, msg=name)
    # rank 0 alone calls back, logs and saves; it saves the unwrapped model
    assert r0["n_callbacks"] == 4 and r1["n_callbacks"] == 0
    ckpt = torch.load(r0["checkpoint"], weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    for name, p0 in r0["params"].items():
        torch.testing.assert_close(ckpt["model"][name], p0, msg=name)
    assert ckpt["card"]["world_size"] == 2 and ckpt["card"]["effective_batch_size"] == 16
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == [
        "checkpoint.pt", "history.csv", "model_card.json", "model_card.md",
    ]
    # a DDP run stopped mid-way and resumed reproduces the uninterrupted one on every rank
    np.testing.assert_allclose(r0["resumed_loss"], r0["loss"], rtol=1e-5)
    np.testing.assert_allclose(r1["resumed_loss"], r1["loss"], rtol=1e-5)


def test_unused_parameter_probe_for_ddp() -> None:
    """DDP gets find_unused_parameters=True only when some trainable parameter gets no gradient."""
    from bmlib.engine import _unused_parameters
    from bmlib.model import encoder_config
    from bmlib.objectives import BrainMassPretrainer, ObjectiveConfig

    cfg = encoder_config("tiny", 8, dim=16, depth=1, heads=2, ffn_dim=32)
    full = BrainMassPretrainer(cfg, ObjectiveConfig(proj_dim=16, mask_ratio=0.25))
    before = {k: v.clone() for k, v in full.state_dict().items()}
    assert _unused_parameters(full, 8, torch.device("cpu")) == []
    for k, v in full.state_dict().items():  # the probe leaves weights and BatchNorm statistics alone
        torch.testing.assert_close(v, before[k], msg=k)
    assert all(p.grad is None for p in full.parameters())
    no_lra = BrainMassPretrainer(cfg, ObjectiveConfig(proj_dim=16, mask_ratio=0.25, lra_weight=0.0))
    unused = _unused_parameters(no_lra, 8, torch.device("cpu"))
    # the projector / predictor and the read-out that feeds only them
    assert unused and all(name.startswith(("projector.", "predictor.", "encoder.readout.")) for name in unused)
