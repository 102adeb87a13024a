"""Tests of bmlib.engine: fit, one epoch, schedules, AMP/device, checkpoints, resume, model card."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bmlib import engine
from bmlib.engine import (
    CHECKPOINT_FORMAT,
    PFCViews,
    WarmupCosine,
    autocast_context,
    build_optimizer,
    fit,
    load_checkpoint,
    make_grad_scaler,
    resolve_amp,
    resolve_device,
    save_checkpoint,
    train_one_epoch,
    weights_sha256,
)
from bmlib.model import encoder_config, load_encoder
from bmlib.objectives import BrainMassPretrainer, ObjectiveConfig

N_ROIS = 10
# A small but complete configuration: every objective term is on (2 masked ROIs of 10).
SMALL = dict(
    preset="tiny",
    encoder_overrides=dict(dim=16, depth=1, heads=2, ffn_dim=32),
    objective=dict(proj_dim=16, mask_ratio=0.2),
    batch_size=8,
    progress=False,
)


def ar_series(n: int, n_rois: int = N_ROIS, seed: int = 0, t_min: int = 40, t_max: int = 60) -> list[np.ndarray]:
    """``n`` AR(1) series (T_i, R) of different lengths with a shared mixing structure."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n_rois, n_rois)) * 0.4
    out = []
    for _ in range(n):
        t = int(rng.integers(t_min, t_max + 1))
        e = rng.standard_normal((t, n_rois)) @ mix
        x = np.zeros((t, n_rois))
        for i in range(1, t):
            x[i] = 0.6 * x[i - 1] + e[i]
        out.append(x.astype(np.float32))
    return out


class ListDataset(torch.utils.data.Dataset):
    """A list-backed Dataset of {"x": (T, R), "index"} items, as CuratedDataset.torch_dataset gives."""

    def __init__(self, series: list[np.ndarray]) -> None:
        self.series = series

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": torch.from_numpy(self.series[i]), "index": i}


@pytest.fixture(scope="module")
def data() -> ListDataset:
    return ListDataset(ar_series(24))


LOSS_COLUMNS = ["loss", "mrm", "lra", "contrastive"]


# --------------------------------------------------------------------------------------------
# fit: outputs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(data: ListDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[engine.FitResult, Path]:
    out = tmp_path_factory.mktemp("fit")
    rows: list[dict] = []
    result = fit(data, epochs=2, out_dir=out, callback=rows.append, **SMALL)
    result.callback_rows = rows  # type: ignore[attr-defined]
    return result, out


def test_fit_history(fitted: tuple[engine.FitResult, Path]) -> None:
    result, _ = fitted
    h = result.history
    assert isinstance(h, pd.DataFrame)
    expected = {"step", "epoch", "lr", "momentum", "grad_norm", "samples", "step_s", "wall_s", "emb_std", *LOSS_COLUMNS}
    assert expected <= set(h.columns)
    # 24 scans, batch 8 -> 3 steps per epoch, 2 epochs
    assert h["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert h["epoch"].tolist() == [0, 0, 0, 1, 1, 1]
    assert (h["samples"] == 8).all()
    assert np.isfinite(h[LOSS_COLUMNS + ["emb_std", "grad_norm"]].to_numpy()).all()
    assert h["wall_s"].is_monotonic_increasing
    # EMA momentum rises from ema_base towards 1; lr decays after warm-up
    assert h["momentum"].iloc[0] == pytest.approx(0.996)
    assert h["momentum"].is_monotonic_increasing
    assert h["lr"].iloc[-1] < h["lr"].max()
    # the notebook callback saw every row
    assert [r["step"] for r in result.callback_rows] == h["step"].tolist()  # type: ignore[attr-defined]


def test_fit_checkpoint_contents(fitted: tuple[engine.FitResult, Path]) -> None:
    result, out = fitted
    path = out / "checkpoint.pt"
    assert result.checkpoint_path == path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in (
        "format", "encoder_config", "objective_config", "model", "optimizer", "scheduler", "rng",
        "generator_state", "step", "epoch", "train_config", "card",
    ):
        assert key in ckpt, key
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["step"] == 6 and ckpt["epoch"] == 2
    assert ckpt["encoder_config"]["dim"] == 16
    assert ckpt["train_config"]["batch_size"] == 8
    # the unwrapped state dict: encoder weights under "encoder.", no DDP/compile prefixes
    assert any(k.startswith("encoder.") for k in ckpt["model"])
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["model"])
    for k, v in result.pretrainer.state_dict().items():
        torch.testing.assert_close(ckpt["model"][k], v.cpu(), rtol=0, atol=0)
    # the encoder alone can be rebuilt from the checkpoint
    encoder, card = load_encoder(path)
    torch.testing.assert_close(
        encoder.state_dict()["embed.weight"], result.pretrainer.encoder.state_dict()["embed.weight"].cpu()
    )
    assert card["weights_sha256"] == weights_sha256(ckpt["model"])


def test_fit_sets_edge_input_norm_from_the_training_scans(
    fitted: tuple[engine.FitResult, Path], data: ListDataset
) -> None:
    from bmlib.connectivity import fc_list
    from bmlib.model import input_norm_statistics

    result, out = fitted
    enc, target = result.pretrainer.encoder, result.pretrainer.target_encoder
    assert enc.cfg.input_norm == "edge"
    mean, std = input_norm_statistics(fc_list(data.series))  # all 24 scans (fewer than INPUT_NORM_SCANS)
    torch.testing.assert_close(enc.input_mean, mean)
    torch.testing.assert_close(enc.input_scale, 1.0 / std.clamp_min(0.05))
    assert torch.equal(target.input_mean, enc.input_mean) and torch.equal(target.input_scale, enc.input_scale)
    loaded, _ = load_encoder(out / "checkpoint.pt")  # saved with the weights
    assert torch.equal(loaded.input_mean, enc.input_mean)
    # a seeded subset when the corpus is larger than max_scans; same subset for the same seed
    p = BrainMassPretrainer(enc.cfg, result.pretrainer.objective_cfg)
    assert engine.fit_input_norm(p, data, max_scans=10, seed=4) == 10
    first = p.encoder.input_mean.clone()
    engine.fit_input_norm(p, data, max_scans=10, seed=4)
    assert torch.equal(p.encoder.input_mean, first) and not torch.allclose(first, mean)


def test_fit_model_card(fitted: tuple[engine.FitResult, Path]) -> None:
    result, out = fitted
    card = json.loads((out / "model_card.json").read_text())
    assert card == json.loads(json.dumps(result.card))
    assert card["preset"] == "tiny"
    assert card["steps"] == 6 and card["total_steps"] == 6 and card["complete"] is True
    assert card["data"]["n_scans"] == 24 and card["data"]["n_rois"] == N_ROIS
    assert card["n_parameters"]["encoder"] == sum(p.numel() for p in result.pretrainer.encoder.parameters())
    assert card["n_parameters"]["trainable"] < card["n_parameters"]["total"]  # the EMA target is extra
    assert card["device"] == "cpu" and card["seed"] == 0 and card["torch_version"] == torch.__version__
    assert card["wall_time_s"] > 0
    last3 = result.history.tail(3)
    for key in LOSS_COLUMNS:
        assert card["final_losses"][key] == pytest.approx(last3[key].mean())
    assert card["weights_sha256"] == weights_sha256(result.pretrainer.state_dict())
    md = (out / "model_card.md").read_text()
    assert card["weights_sha256"] in md and "tiny" in md
    csv = pd.read_csv(out / "history.csv")
    np.testing.assert_allclose(csv["loss"].to_numpy(), result.history["loss"].to_numpy(), rtol=1e-12)


def test_fit_is_seeded(data: ListDataset) -> None:
    a = fit(data, epochs=1, seed=3, **SMALL).history
    b = fit(data, epochs=1, seed=3, **SMALL).history
    c = fit(data, epochs=1, seed=4, **SMALL).history
    np.testing.assert_array_equal(a["loss"].to_numpy(), b["loss"].to_numpy())
    assert not np.allclose(a["loss"].to_numpy(), c["loss"].to_numpy())


def test_fit_accepts_arrays_and_crop_views() -> None:
    series = np.stack([s[:40] for s in ar_series(16, seed=1)])  # (16, 40, R)
    result = fit(series, epochs=1, view_mode="crop", crop_length=30, **SMALL)
    assert len(result.history) == 2
    assert result.card["data"]["n_scans"] == 16


def test_fit_without_out_dir_writes_nothing(data: ListDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fit(data, epochs=1, max_steps=1, **SMALL)
    assert result.checkpoint_path is None
    assert list(tmp_path.iterdir()) == []
    assert result.card["steps"] == 1 and result.card["complete"] is False


def test_fit_bf16_autocast_on_cpu(data: ListDataset) -> None:
    result = fit(data, epochs=1, max_steps=2, amp="bf16", **SMALL)
    assert result.card["amp"] == "bfloat16"
    assert np.isfinite(result.history["loss"].to_numpy()).all()


# --------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def straight(data: ListDataset) -> pd.DataFrame:
    return fit(data, epochs=2, **SMALL).history


def _assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["step"].tolist() == b["step"].tolist()
    for col in [*LOSS_COLUMNS, "emb_std", "grad_norm", "lr", "momentum"]:
        np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-5, atol=1e-7, err_msg=col)


@pytest.mark.parametrize("stop_at", [3, 4], ids=["after-epoch-1", "mid-epoch-2"])
def test_resume_reproduces_uninterrupted_run(
    data: ListDataset, straight: pd.DataFrame, tmp_path: Path, stop_at: int
) -> None:
    first = fit(data, epochs=2, out_dir=tmp_path, max_steps=stop_at, **SMALL)
    assert len(first.history) == stop_at
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == stop_at
    second = fit(data, epochs=2, out_dir=tmp_path, resume="auto", **SMALL)
    _assert_same_curve(straight, second.history)
    assert second.card["steps"] == 6 and second.card["complete"] is True


def test_resume_after_a_kill(data: ListDataset, straight: pd.DataFrame, tmp_path: Path) -> None:
    class Killed(RuntimeError):
        pass

    def kill_at_step_5(row: dict) -> None:
        if row["step"] == 5:
            raise Killed

    with pytest.raises(Killed):
        fit(data, epochs=2, out_dir=tmp_path, callback=kill_at_step_5, **SMALL)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3  # the end-of-epoch-1 checkpoint
    resumed = fit(data, epochs=2, out_dir=tmp_path, resume=tmp_path / "checkpoint.pt", **SMALL)
    _assert_same_curve(straight, resumed.history)
    # the files on disk describe the whole run
    assert pd.read_csv(tmp_path / "history.csv")["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_another_model(data: ListDataset, tmp_path: Path) -> None:
    fit(data, epochs=1, out_dir=tmp_path, max_steps=1, **SMALL)
    args = {**SMALL, "encoder_overrides": dict(dim=32, depth=1, heads=2, ffn_dim=32)}
    with pytest.raises(ValueError, match="cannot resume: the checkpoint's encoder config"):
        fit(data, epochs=1, out_dir=tmp_path, resume="auto", **args)


def test_resume_auto_without_checkpoint_starts_fresh(data: ListDataset, tmp_path: Path) -> None:
    result = fit(data, epochs=1, out_dir=tmp_path, resume="auto", **SMALL)
    assert result.history["step"].tolist() == [1, 2, 3]


def test_resume_of_a_finished_run_trains_nothing(data: ListDataset, tmp_path: Path) -> None:
    done = fit(data, epochs=1, out_dir=tmp_path, **SMALL)
    again = fit(data, epochs=1, out_dir=tmp_path, resume="auto", **SMALL)
    pd.testing.assert_frame_equal(again.history, done.history)
    assert again.card["weights_sha256"] == done.card["weights_sha256"]


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def test_save_checkpoint_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    good = {"format": CHECKPOINT_FORMAT, "step": 1, "model": {"w": torch.ones(3)}}
    save_checkpoint(path, good)

    def broken_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {**good, "step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint is intact


def test_checkpoint_format_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected checkpoint\\['format'\\]"):
        save_checkpoint(tmp_path / "c.pt", {"step": 1})
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a 'bmlib-checkpoint-v1' checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_sha256_tracks_values() -> None:
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2, dtype=torch.bfloat16)}
    b = {k: v.clone() for k, v in a.items()}
    assert weights_sha256(a) == weights_sha256(b)
    b["w"][0, 0] = 1e-3
    assert weights_sha256(a) != weights_sha256(b)
    with pytest.raises(TypeError, match="expected tensors"):
        weights_sha256({"w": 1.0})


# --------------------------------------------------------------------------------------------
# train_one_epoch: accumulation and clipping with a deterministic toy pretrainer
# --------------------------------------------------------------------------------------------
class ToyPretrainer(nn.Module):
    """Same interface as BrainMassPretrainer, no randomness: loss = mean over the batch."""

    def __init__(self, n_rois: int = N_ROIS, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(n_rois * n_rois, 4)
        self.target = nn.Linear(n_rois * n_rois, 4).requires_grad_(False)
        self.scale = scale
        self.updates: list[float] = []

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, *, generator: torch.Generator | None = None) -> dict:
        a, b = self.lin(v1.flatten(1)), self.lin(v2.flatten(1))  # (B, 4)
        per_sample = ((a - b.flip(1)) ** 2).sum(1) + a.pow(2).sum(1)  # (B,)
        loss = self.scale * per_sample.mean()
        return {"loss": loss, "mrm": loss.detach(), "lra": loss.detach() * 0, "emb_std": a.detach().std(0).mean()}

    def update_target(self, momentum: float) -> None:
        self.updates.append(momentum)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.lin.parameters())


def full_fc_views(batch: dict, generator: torch.Generator) -> torch.Tensor:
    """Deterministic 'views': the FC of the whole series and its square."""
    x = batch["x"] - batch["x"].mean(1, keepdim=True)
    cov = x.transpose(1, 2) @ x
    d = cov.diagonal(dim1=1, dim2=2).sqrt()
    fc = cov / (d[:, :, None] * d[:, None, :])  # (B, R, R)
    return torch.stack([fc, fc**2])


def toy_batches(n: int, batch_size: int, seed: int = 0) -> list[dict]:
    series = torch.from_numpy(np.stack([s[:40] for s in ar_series(n, seed=seed)]))
    return [
        {"x": series[i : i + batch_size], "lengths": torch.full((batch_size,), 40)} for i in range(0, n, batch_size)
    ]


def _one_step_grads(accum: int, batch_size: int, batches: list[dict], grad_clip: float | None = None) -> dict:
    model = ToyPretrainer()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    captured: dict[str, Any] = {}

    def grab(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if "grads" not in captured:
            captured["grads"] = [p.grad.clone() for p in model.trainable_parameters()]

    opt.register_step_pre_hook(grab)
    rows = train_one_epoch(
        model, batches, opt, sched, device=torch.device("cpu"), generator=torch.Generator(),
        view_fn=full_fc_views, accum_steps=accum, grad_clip=grad_clip, max_steps=1,
    )
    captured["rows"] = rows
    return captured


def test_gradient_accumulation_matches_a_larger_batch() -> None:
    eight = toy_batches(8, 8)
    four = toy_batches(8, 4)
    big = _one_step_grads(1, 8, eight)
    acc = _one_step_grads(2, 4, four)
    for g_big, g_acc in zip(big["grads"], acc["grads"], strict=True):
        torch.testing.assert_close(g_acc, g_big, rtol=1e-5, atol=1e-6)
    assert acc["rows"][0]["loss"] == pytest.approx(big["rows"][0]["loss"], rel=1e-5)
    assert acc["rows"][0]["samples"] == big["rows"][0]["samples"] == 8


def test_gradient_clipping_is_applied() -> None:
    batches = toy_batches(8, 8)
    free = _one_step_grads(1, 8, batches, grad_clip=None)
    clipped = _one_step_grads(1, 8, batches, grad_clip=1e-3)
    norm_free = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in free["grads"]]))
    norm_clipped = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in clipped["grads"]]))
    assert norm_free.item() > 1e-2  # the toy problem's gradient is far above the clip
    assert clipped["rows"][0]["grad_norm"] == pytest.approx(norm_free.item(), rel=1e-5)  # logged before clipping
    assert norm_clipped.item() == pytest.approx(1e-3, rel=1e-4)
    torch.testing.assert_close(clipped["grads"][0] / norm_clipped, free["grads"][0] / norm_free)


def test_train_one_epoch_steps_scheduler_and_target() -> None:
    model = ToyPretrainer()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(2, 5, 0.0))
    rows = train_one_epoch(
        model, toy_batches(20, 4), opt, sched, device=torch.device("cpu"), generator=torch.Generator(),
        view_fn=full_fc_views, momentum=lambda s: 0.9 + 0.01 * s, accum_steps=1, start_step=10,
    )
    assert [r["step"] for r in rows] == [11, 12, 13, 14, 15]
    assert [r["lr"] for r in rows] == pytest.approx([WarmupCosine(2, 5, 0.0)(s) for s in range(5)])
    assert model.updates == pytest.approx([0.9 + 0.01 * s for s in range(10, 15)])


def test_train_one_epoch_refuses_non_finite_loss() -> None:
    model = ToyPretrainer(scale=float("nan"))
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    before = [p.detach().clone() for p in model.trainable_parameters()]
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 1 .* before the optimizer step"):
        train_one_epoch(
            model, toy_batches(4, 4), opt, sched, device=torch.device("cpu"), generator=torch.Generator(),
            view_fn=full_fc_views,
        )
    for p, q in zip(model.trainable_parameters(), before, strict=True):
        torch.testing.assert_close(p, q)  # the weights were not touched


# --------------------------------------------------------------------------------------------
# optimizer, schedules, device, AMP
# --------------------------------------------------------------------------------------------
def test_optimizer_holds_every_trainable_parameter_and_not_the_target() -> None:
    pretrainer = BrainMassPretrainer(encoder_config("tiny", N_ROIS), ObjectiveConfig(mask_ratio=0.2))
    opt = build_optimizer(pretrainer, lr=1e-3, weight_decay=0.05)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    trainable = {id(p) for p in pretrainer.trainable_parameters()}
    frozen = {id(p) for p in pretrainer.parameters() if not p.requires_grad}
    assert in_opt == trainable
    assert frozen and not (in_opt & frozen)
    # every online module, heads included (the original code left the heads out)
    for name in ("encoder", "projector", "predictor", "mrm_head"):
        assert {id(p) for p in getattr(pretrainer, name).parameters()} <= in_opt, name
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decay == {"decay": 0.05, "no_decay": 0.0}
    assert all(p.ndim < 2 for g in opt.param_groups if g["name"] == "no_decay" for p in g["params"])


def test_warmup_cosine() -> None:
    f = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    values = [f(s) for s in range(14)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[4:], values[5:], strict=False))
    assert f(14) == pytest.approx(0.1)
    assert WarmupCosine(0, 10)(0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected 0 <= warmup_steps <= total_steps"):
        WarmupCosine(11, 10)
    with pytest.raises(ValueError, match="expected total_steps >= 1"):
        WarmupCosine(0, 0)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="expected device 'auto', 'cpu'"):
        resolve_device("tpu7")
    with pytest.raises(TypeError, match="expected device as a str"):
        resolve_device(0)  # type: ignore[arg-type]


def test_resolve_amp_and_autocast() -> None:
    cpu = torch.device("cpu")
    assert resolve_amp(cpu, "auto") is None
    assert resolve_amp(cpu, False) is None
    assert resolve_amp(cpu, "bf16") is torch.bfloat16
    assert make_grad_scaler(cpu, "bf16") is None
    with pytest.raises(ValueError, match="amp='fp16' is only supported on CUDA"):
        resolve_amp(cpu, "fp16")
    with pytest.raises(ValueError, match="expected amp in"):
        resolve_amp(cpu, "int8")
    a = torch.randn(4, 4)
    with autocast_context(cpu, "auto"):
        assert (a @ a).dtype == torch.float32
    with autocast_context(cpu, "bf16"):
        assert (a @ a).dtype == torch.bfloat16


def test_pfc_views_shape() -> None:
    x = torch.from_numpy(np.stack([s[:40] for s in ar_series(3)]))
    g = torch.Generator().manual_seed(0)
    v = PFCViews("drop", 0.2)({"x": x, "lengths": torch.tensor([40, 35, 30])}, g)
    assert v.shape == (2, 3, N_ROIS, N_ROIS)
    assert not torch.allclose(v[0], v[1])
    torch.testing.assert_close(v, v.transpose(-1, -2))


# --------------------------------------------------------------------------------------------
# argument checking
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(batch_size=64), ValueError, "batch_size 64 is larger than the 24 scans per process"),
        (dict(view_mode="shuffle"), ValueError, "expected view_mode in"),
        (dict(view_mode="crop"), ValueError, "view_mode='crop' needs crop_length"),
        (dict(drop_fraction=1.0), ValueError, "expected 0 <= drop_fraction < 1"),
        (dict(epochs=0), ValueError, "expected epochs > 0, got 0"),
        (dict(epochs=1.5), TypeError, "expected epochs as an int, got float"),
        (dict(lr=-1.0), ValueError, "expected lr > 0"),
        (dict(min_lr=1.0), ValueError, "expected min_lr <= lr"),
        (dict(warmup_epochs=1, warmup_steps=2), ValueError, "give warmup_epochs or warmup_steps, not both"),
        (dict(warmup_steps=100), ValueError, "expected a warm-up no longer than the run"),
        (dict(resume="auto"), ValueError, "resume='auto' looks for <out_dir>/checkpoint.pt but out_dir is None"),
        (dict(amp="fp16"), ValueError, "amp='fp16' is only supported on CUDA"),
        (dict(device="cuda:3"), ValueError, "CUDA is not available"),
        (dict(objective=3), TypeError, "expected objective as an ObjectiveConfig, a dict or None"),
        (dict(preset="huge"), ValueError, "unknown encoder preset 'huge'"),
    ],
)
def test_fit_checks_arguments(data: ListDataset, kwargs: dict, error: type, match: str) -> None:
    if kwargs.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    args = {**SMALL, **kwargs}
    with pytest.raises(error, match=match):
        fit(data, epochs=args.pop("epochs", 1), **args)


def test_fit_checks_the_dataset() -> None:
    with pytest.raises(ValueError, match="expected a 3D array \\(n_scans, n_timepoints, n_rois\\), got shape"):
        fit(np.zeros((4, 10)), **SMALL)
    with pytest.raises(ValueError, match="expected item 'x' as a 2D array \\(n_timepoints, n_rois\\)"):
        fit([np.zeros(10)] * 4, **SMALL)
    with pytest.raises(ValueError, match="expected a non-empty dataset"):
        fit([], **SMALL)
    with pytest.raises(TypeError, match="expected a torch Dataset"):
        fit(42, **SMALL)


def test_fit_uses_the_curated_manifest(data: ListDataset) -> None:
    class Curated:
        """Duck-typed CuratedDataset: a manifest and a torch_dataset()."""

        root = "/runs/x/data"
        manifest = pd.DataFrame(
            {"sample_id": [f"s{i}" for i in range(24)], "participant": [f"p{i // 2}" for i in range(24)],
             "dataset": ["siteA"] * 16 + ["siteB"] * 8, "site": ["A"] * 16 + ["B"] * 8}
        )

        def torch_dataset(self) -> ListDataset:
            return data

    result = fit(Curated(), epochs=1, max_steps=1, data_description={"note": "test"}, **SMALL)
    d = result.card["data"]
    assert d["datasets"] == {"siteA": 16, "siteB": 8}
    assert d["n_participants"] == 12 and d["n_sites"] == 2 and d["n_scans"] == 24
    assert d["root"] == "/runs/x/data" and d["note"] == "test"


def test_fit_learns_on_structured_data() -> None:
    """MRM can only fall if masked FC rows are predicted from the visible ones (shared structure)."""
    data = ListDataset(ar_series(32, seed=5, t_min=120, t_max=140))
    h = fit(data, epochs=6, lr=3e-3, warmup_steps=2, seed=0, **SMALL).history
    first, last = h["mrm"].head(4).mean(), h["mrm"].tail(4).mean()
    assert last < 0.7 * first, (first, last)  # seeds 0-3 give ratios 0.23-0.45
    assert math.isfinite(h["loss"].iloc[-1])
