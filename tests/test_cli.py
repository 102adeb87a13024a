"""Tests of bmlib.cli: ``python -m bmlib pretrain`` (in-process, as a module, under torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bmlib import cli

REPO = Path(__file__).resolve().parent.parent
N_ROIS = 8


def write_npz(path: Path, n: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((N_ROIS, N_ROIS))
    arrays = {f"scan{i:02d}": (rng.standard_normal((int(rng.integers(40, 50)), N_ROIS)) @ mix) for i in range(n)}
    np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_npz(tmp_path / "series.npz")
    cfg = {
        "data": "series.npz",  # relative to the config file
        "preset": "tiny",
        "encoder_overrides": {"dim": 16, "depth": 1, "heads": 2, "ffn_dim": 32},
        "objective": {"proj_dim": 16, "mask_ratio": 0.25},
        "epochs": 5,
        "batch_size": 4,
        "out_dir": "pretrain",  # relative to the config file too
        "progress": False,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pretrain_from_config_with_overrides(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = config.parent / "elsewhere"
    status = cli.main(
        ["pretrain", "--config", str(config), "--epochs", "1", "--out", str(out), "--seed", "3",
         "--set", "objective={proj_dim: 16, mask_ratio: 0.5}"]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint"] == str(out / "checkpoint.pt") and summary["steps"] == 4
    assert summary["world_size"] == 1
    card = json.loads((out / "model_card.json").read_text())
    assert card["epochs"] == 1 and card["seed"] == 3  # flags override the YAML file
    assert card["objective_config"]["mask_ratio"] == 0.5  # --set overrides it too
    assert card["encoder_config"]["dim"] == 16 and card["encoder_config"]["n_rois"] == N_ROIS
    assert card["data"]["n_scans"] == 16
    assert not (config.parent / "pretrain").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["train_config"]["epochs"] == 1


def test_pretrain_data_flag_and_npy(tmp_path: Path, config: Path) -> None:
    arr = np.random.default_rng(1).standard_normal((8, 30, N_ROIS)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    status = cli.main(["pretrain", "--config", str(config), "--data", str(tmp_path / "x.npy"), "--max-steps", "1"])
    assert status == 0
    card = json.loads((tmp_path / "pretrain" / "model_card.json").read_text())
    assert card["data"]["n_scans"] == 8 and card["steps"] == 1


def test_pretrain_resume_flag(config: Path) -> None:
    assert cli.main(["pretrain", "--config", str(config), "--epochs", "2", "--max-steps", "3"]) == 0
    assert cli.main(["pretrain", "--config", str(config), "--epochs", "2", "--resume", "auto"]) == 0
    ckpt = torch.load(config.parent / "pretrain" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 8 and [r["step"] for r in ckpt["history"]] == list(range(1, 9))


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    """A curated folder with two datasets; tasks.json names only 'pre' for pretraining."""
    from bmlib.data import Atlas, curate, write_tasks

    atlas = Atlas(
        "toy8", [f"roi{i}" for i in range(N_ROIS)], ["A", "B"] * (N_ROIS // 2), ["L", "R"] * (N_ROIS // 2),
        np.zeros((N_ROIS, 3)),
    )
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for name, n in (("pre", 12), ("heldout", 8)):
        scans = [rng.standard_normal((60, N_ROIS)).astype(np.float32) for _ in range(n)]
        curate(root, scans, dataset=name, atlas=atlas)
    write_tasks(root, {}, pretraining_datasets=["pre"])
    return root


def test_pretrain_on_a_curated_folder(curated: Path, tmp_path: Path, config: Path) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(config), "--data", str(curated), "--out", str(out), "--epochs", "1"]
    assert cli.main(args) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["datasets"] == {"pre": 12}  # the held-out cohort stays out of pretraining
    assert card["data"]["root"] == str(curated) and card["steps"] == 3
    assert cli.main([*args, "--datasets", "pre", "heldout"]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["datasets"] == {"heldout": 8, "pre": 12} and card["steps"] == 5


def test_pretrain_unknown_curated_dataset(curated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pretrain", "--data", str(curated), "--datasets", "abide"]) == 2
    assert "unknown dataset(s) ['abide']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "yaml_text", "match"),
    [
        ([], "epochz: 3\n", r"unknown key\(s\) \['epochz'\]"),
        ([], "- 1\n- 2\n", "expected a YAML mapping of fit\\(\\) arguments"),
        ([], "preset: tiny\n", "no data: give --data PATH"),
        (["--data", "missing.npz"], "preset: tiny\n", "data not found"),
        (["--data", "cfg.yaml"], "preset: tiny\n", "expected a curated dataset folder, a .npz or a .npy file"),
        (["--set", "lr"], "data: x.npz\n", "expected --set KEY=VALUE, got 'lr'"),
        (["--set", "callback=1"], "data: x.npz\n", r"unknown key\(s\) \['callback'\] in --set"),
        (["--datasets", "a"], "data: x.npy\n", "datasets= selects datasets of a curated folder"),
    ],
)
def test_pretrain_configuration_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    extra: list[str], yaml_text: str, match: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(yaml_text)
    assert cli.main(["pretrain", "--config", "cfg.yaml", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmlib pretrain: error: ")
    import re

    assert re.search(match, err), err


def test_missing_config_and_bad_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pretrain", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    np.save(tmp_path / "flat.npy", np.zeros((3, 4)))
    assert cli.main(["pretrain", "--data", str(tmp_path / "flat.npy")]) == 2
    assert "expected a .npy array (n_scans, n_timepoints, n_rois), got shape (3, 4)" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["pretrain", "--epochs", "many"])
    assert exc.value.code == 2


def test_parser_has_a_pretrain_subcommand() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["pretrain", "--data", "d", "--compile", "--no-progress", "--lr", "1e-3", "--crop-length", "0.8"]
    )
    assert args.command == "pretrain" and args.compile is True and args.progress is False and args.lr == 1e-3
    assert args.crop_length == 0.8 and parser.parse_args(["pretrain", "--crop-length", "30"]).crop_length == 30
    assert cli.build_parser().parse_args(["pretrain"]).compile is None  # unset flags do not override YAML


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_python_dash_m_bmlib(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bmlib", "pretrain", "--config", str(config), "--max-steps", "1"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"] == 1


@pytest.mark.slow
def test_torchrun_two_processes(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "bmlib", "pretrain", "--config", str(config), "--epochs", "2"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout)  # printed by rank 0 only
    assert summary["world_size"] == 2
    card = json.loads((config.parent / "pretrain" / "model_card.json").read_text())
    # 16 scans / 2 processes / batch 4 = 2 steps per epoch
    assert card["world_size"] == 2 and card["steps"] == 4 and card["effective_batch_size"] == 8


def test_notebooks_subcommand_refuses_unknown_parameter(tmp_path) -> None:
    from bmlib.cli import main

    with pytest.raises(ValueError, match="declared by none of the notebooks"):
        main(["notebooks", "run", "--out", str(tmp_path / "r"), "-p", "NOT_A_PARAMETER", "1"])


def test_notebooks_index_prints_table(tmp_path, capsys) -> None:
    from bmlib.cli import main

    (tmp_path / "index.csv").write_text("run_id,status\na,ok\n")
    assert main(["notebooks", "index", str(tmp_path)]) == 0
    assert "a" in capsys.readouterr().out
