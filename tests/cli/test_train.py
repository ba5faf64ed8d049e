"""End-to-end stage-1 runs through the Hydra config, on generated data."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError, TrainingError
from fader_lightning.jobs.train import train
from fader_lightning.masking import available_methods
from fader_lightning.models import EARModule
from fader_lightning.results import load_results

SMALL_DATA = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64"]


@pytest.fixture
def vit_weights(tmp_path: Path) -> Path:
    import timm

    path = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_small_patch8_224.dino", pretrained=False).state_dict(), path)
    return path


@pytest.mark.parametrize("method", sorted(available_methods()))
def test_fast_dev_run_every_masking_method(tmp_path: Path, method: str, request: pytest.FixtureRequest) -> None:
    overrides = [*SMALL_DATA, TINY_UNET, f"masking={method}", "debug=fdr"]
    if method == "attention":
        overrides.append(f"masking.weights_path={request.getfixturevalue('vit_weights')}")
    cfg = compose_train_cfg(tmp_path, overrides)
    results = train(cfg)
    metrics = results["ear"]["metrics"]
    assert results["ear"]["masking"] == method
    assert set(metrics) >= {"image_auroc", "pixel_auroc", "aupro"}
    assert load_results(tmp_path / "out")["ear"]["status"] == "ok"


def test_stage1_learns_on_generated_data(tmp_path: Path) -> None:
    cfg = compose_train_cfg(
        tmp_path,
        ["data.image_size=64", "data.n_train=24", TINY_UNET, "masking=saliency", "trainer.max_epochs=8",
         "model.optimizer.lr=1e-3", "callbacks.overlays.num_samples=4"],
    )  # fmt: skip
    results = train(cfg)["ear"]
    assert results["metrics"]["image_auroc"] > 0.8
    assert results["metrics"]["pixel_auroc"] > 0.8
    losses = _epoch_losses(tmp_path / "out" / "csv")
    assert losses[-1] < 0.8 * losses[0]
    overlays = sorted((tmp_path / "out" / "overlays" / "ear").glob("*.png"))
    assert len(overlays) == 4
    ckpt = torch.load(results["checkpoint"], weights_only=False)
    assert not any(k.startswith("ear.masker.") for k in ckpt["state_dict"])
    reloaded = EARModule.load_from_checkpoint(results["checkpoint"])
    assert reloaded.hparams.masking["name"] == "saliency"


def _epoch_losses(csv_dir: Path) -> list[float]:
    import csv

    rows = list(csv.DictReader(next(csv_dir.rglob("metrics.csv")).open()))
    per_epoch: dict[int, list[float]] = {}
    for row in rows:
        if row.get("train/loss"):
            per_epoch.setdefault(int(row["epoch"]), []).append(float(row["train/loss"]))
    return [sum(v) / len(v) for _, v in sorted(per_epoch.items())]


def test_same_seed_same_masks_and_metrics(tmp_path: Path) -> None:
    def run(folder: str, seed: int) -> tuple[dict, dict]:
        overrides = [*SMALL_DATA, TINY_UNET, "trainer.max_epochs=2", "logger=none", f"seed={seed}"]
        cfg = compose_train_cfg(tmp_path / folder, overrides, data_root=tmp_path / "data")
        metrics = train(cfg)["ear"]["metrics"]
        module = EARModule.load_from_checkpoint(tmp_path / folder / "out/checkpoints/ear/last.ckpt")
        return metrics, module.state_dict()

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for method in ("saliency", "random_multi"):
        from fader_lightning.masking import build_mask_generator

        assert torch.equal(build_mask_generator(method)(images), build_mask_generator(method)(images))
    (m1, s1), (m2, s2), (m3, _) = run("a", 0), run("b", 0), run("c", 1)
    assert m1 == m2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert m1 != m3


def test_a_later_job_trains_and_tests_on_the_cached_images_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [*SMALL_DATA, TINY_UNET, "trainer.max_epochs=2", "logger=none"]
    first = compose_train_cfg(tmp_path / "a", overrides, data_root=tmp_path / "data")
    cache = tmp_path / "a" / "logs" / "cache" / "images"
    assert first.data.image_cache == str(cache)
    results = train(first)["ear"]
    metrics = results["metrics"]
    assert len(list(cache.rglob("*.npy"))) == 8 + results["test_images"]  # every training and test image, once
    from fader_lightning.data import dataset

    monkeypatch.setattr(dataset, "read_image", lambda path: pytest.fail(f"{path} was decoded although it is cached"))
    second = compose_train_cfg(tmp_path / "b", [*overrides, f"data.image_cache={cache}"], data_root=tmp_path / "data")
    assert train(second)["ear"]["metrics"] == metrics


def test_image_size_not_divisible_by_stride(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "data.image_size=36", "debug=fdr"])
    with pytest.raises(ConfigError, match="not divisible by the U-Net stride 8"):
        train(cfg)


def test_unknown_masking_lists_known(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "debug=fdr", "masking=none", "masking.name=bogus"])
    with pytest.raises(ConfigError, match=r"^masking\.name='bogus'.*known: attention, checkerboard, none, random"):
        train(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [("masking.phase=2", r"^masking\.phase=2 is invalid; use 0 or 1"),
     ("model.unet.widths=[8]", r"^model\.unet\.widths=\[8\] is invalid"),
     ("model.fill.fill=blur", r"^model\.fill\.fill='blur' is unknown"),
     ("model.scoring.pooling=median", r"^model\.scoring\.pooling='median' is unknown"),
     ("model.loss.ssim_window=4", r"^model\.loss\.ssim_window=4 is invalid")],
)  # fmt: skip
def test_a_rejected_setting_is_named_by_its_config_key(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "debug=fdr", "masking=checkerboard", override])
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_attention_weights_path_errors(tmp_path: Path) -> None:
    from fader_lightning.errors import CheckpointError

    missing = tmp_path / "nope.pth"
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "debug=fdr", "masking=attention",
                                       f"masking.weights_path={missing}"])  # fmt: skip
    with pytest.raises(CheckpointError, match=str(missing)):
        train(cfg)
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo": torch.zeros(1)}, wrong)
    cfg.model.masking.weights_path = str(wrong)
    cfg.overwrite = True  # the failed first attempt left its metrics.json in the folder
    with pytest.raises(CheckpointError, match=r"wrong\.pth"):
        train(cfg)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "trainer.max_epochs=3", "logger=none"])
    original = EARModule._losses

    def poisoned(self, batch, masks, skip_transform=None):
        losses = original(self, batch, masks, skip_transform)
        if self.current_epoch == 1:
            losses["loss"] = losses["loss"] * math.nan
        return losses

    monkeypatch.setattr(EARModule, "_losses", poisoned)
    with pytest.raises(TrainingError, match=r"became nan at epoch 1.*last\.ckpt"):
        train(cfg)
    last = tmp_path / "out/checkpoints/ear/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    stored = load_results(tmp_path / "out")["ear"]
    assert stored["status"] == "failed" and stored["checkpoint"] == str(last)  # what the failed stage trained


def test_cli_overrides_as_documented(tmp_path: Path, synthetic_mvtec: Path) -> None:
    out = tmp_path / "OUT"
    cmd = [sys.executable, "-m", "fader_lightning.cli.train", "data=mvtec", f"data.root={synthetic_mvtec}",
           "data.category=synth_object", "data.image_size=128", "masking=saliency", "trainer.max_epochs=1",
           "logger=none", "seed=0", f"hydra.run.dir={out}", TINY_UNET, "trainer.enable_progress_bar=false", "stage=ear",
           f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "FADER_ROOT": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads((out / "metrics.json").read_text())["ear"]
    assert entry["category"] == "synth_object" and entry["masking"] == "saliency" and entry["seed"] == 0
    assert 0.0 <= entry["metrics"]["image_auroc"] <= 1.0


def test_cli_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fader_lightning.cli.train", "data=mvtec", f"data.root={tmp_path / 'missing'}",
           "logger=none", f"hydra.run.dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "DataError: dataset root" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_resume_reaches_the_same_weights(tmp_path: Path) -> None:
    base = [*SMALL_DATA, TINY_UNET, "logger=none", "seed=3", "data.train_batch_size=4"]
    full = compose_train_cfg(tmp_path / "full", [*base, "trainer.max_epochs=3"], data_root=tmp_path / "data")
    train(full)
    part = compose_train_cfg(tmp_path / "part", [*base, "trainer.max_epochs=1"], data_root=tmp_path / "data")
    train(part)  # the "interrupted" run: stopped after epoch 1
    ckpt = tmp_path / "part/out/checkpoints/ear/last.ckpt"
    resumed = compose_train_cfg(tmp_path / "part", [*base, "trainer.max_epochs=3", f"ckpt_path={ckpt}"],
                                data_root=tmp_path / "data")  # fmt: skip
    train(resumed)
    a = torch.load(tmp_path / "full/out/checkpoints/ear/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "part/out/checkpoints/ear/last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_stage1_store_reuses_identical_stage1(tmp_path: Path) -> None:
    base = [*SMALL_DATA, TINY_UNET, "logger=none", "trainer.max_epochs=1", "reuse_stage1=true", "stage=both",
            "fader.trainer.max_epochs=1"]  # fmt: skip
    first = train(compose_train_cfg(tmp_path / "a", base, data_root=tmp_path / "data"))
    cfg = compose_train_cfg(tmp_path / "b", [*base, "fader.patch_size=4"], data_root=tmp_path / "data")
    cfg.paths.stage1_store = str(tmp_path / "a/logs/stage1_store")
    second = train(cfg)
    assert "reused" not in first["ear"] and second["ear"]["reused"] is True
    assert second["ear"]["metrics"] == first["ear"]["metrics"]
    assert not (tmp_path / "b/out/checkpoints/ear").exists()
    assert second["fader"]["config"]["fader"]["patch_size"] == 4


def test_sampler_order_depends_on_seed_and_epoch_only() -> None:
    from fader_lightning.data.datamodule import EpochSeededSampler

    a, b = EpochSeededSampler(20, seed=1), EpochSeededSampler(20, seed=1)
    b.set_epoch(1)
    first_b = list(b)
    b.set_epoch(0)
    assert list(a) == list(b) and list(a) != first_b
    a.set_epoch(1)
    assert list(a) == first_b


def test_test_split_without_anomalies_gives_null_metrics(tmp_path: Path) -> None:
    overrides = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=0",
                 "data.size=64", TINY_UNET, "debug=fdr"]  # fmt: skip
    train(compose_train_cfg(tmp_path, overrides))
    text = (tmp_path / "out" / "metrics.json").read_text()
    metrics = json.loads(text)["ear"]["metrics"]  # strict JSON: json.loads would accept NaN, the text must not
    assert "NaN" not in text and metrics["image_auroc"] is None and metrics["aupro"] is None


@pytest.mark.parametrize(("length", "batch"), [(60, 16), (5, 8), (16, 16), (7, 1)])
def test_every_training_sample_is_seen_every_epoch_in_full_batches(length: int, batch: int) -> None:
    from fader_lightning.data.datamodule import EpochSeededSampler

    sampler = EpochSeededSampler(length, seed=0, batch_size=batch)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert set(order) == set(range(length))  # nothing dropped
        assert len(order) == len(sampler) and len(order) % batch == 0 and len(order) - length < batch
        assert len(set(order[:length])) == length  # the padding repeats, never replaces, a sample


def test_normalised_scoring_measures_normal_statistics_once_and_they_travel(tmp_path: Path) -> None:
    base = [*SMALL_DATA, TINY_UNET, "trainer.max_epochs=2", "logger=none", "callbacks.overlays.num_samples=0",
            "data.val_policy=from_train", "data.val_ratio=0.25", "reuse_stage1=true"]  # fmt: skip
    store = tmp_path / "store"

    def run(folder: str, *extra: str) -> dict:
        cfg = compose_train_cfg(tmp_path / folder, [*base, *extra], data_root=tmp_path / "data")
        cfg.paths.stage1_store = str(store)
        return train(cfg)["ear"]

    zscore = run("zscore", "model.scoring.normalize=zscore")
    module = EARModule.load_from_checkpoint(zscore["checkpoint"])
    assert module.scorer.normalize == "zscore" and module.scorer.map_mean.shape == (1, 1, 32, 32)
    # the statistics are those of the model's own unnormalised maps of the training images: the 2 normals held out
    # for the thresholds stay unseen by them
    datamodule = compose_and_build_data(tmp_path)
    module.eval().scorer.clear_statistics()
    with torch.no_grad():
        maps = torch.cat([module.infer(b.image)["anomaly_map"] for b in datamodule.fit_dataloader()])
    assert len(maps) == 6 and len(datamodule.val_samples) == 2
    assert not {s.image_path for s in datamodule.val_samples} & {s.image_path for s in datamodule.train_samples}
    stored = EARModule.load_from_checkpoint(zscore["checkpoint"]).scorer
    torch.testing.assert_close(stored.map_mean, maps.mean(0, keepdim=True), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stored.map_std, maps.std(0, unbiased=False, keepdim=True), rtol=1e-3, atol=1e-5)
    # the stored model evaluated without normalisation scores differently; with it again, exactly the same
    plain = run("plain", "model.scoring.normalize=none")
    again = run("again", "model.scoring.normalize=zscore")
    assert plain.get("reused") and again.get("reused")
    assert plain["metrics"] != zscore["metrics"]
    assert again["metrics"] == zscore["metrics"]


def compose_and_build_data(tmp_path: Path):
    """The datamodule of the normalisation test, built as its jobs build it."""
    from hydra.utils import instantiate

    cfg = compose_train_cfg(tmp_path / "data_only", [*SMALL_DATA, "data.val_policy=from_train", "data.val_ratio=0.25"],
                            data_root=tmp_path / "data")  # fmt: skip
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule
