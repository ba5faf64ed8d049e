"""Stage 2 (FADeR) through the training entry point, on generated data."""

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_UNET, compose_train_cfg, datamodule, fader_module
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.masking import single_mask_problem
from fader_lightning.models import EARModule, FADeRModule
from fader_lightning.results import load_results

# masking=none: the stage-1 mask misses every defect on purpose
STAGE1 = ["data.category=synth_object", "data.image_size=64", "data.n_train=24", "data.n_test_defect=4", TINY_UNET,
          "masking=none", "trainer.max_epochs=6", "model.optimizer.lr=1e-3", "logger=none",
          "trainer.enable_progress_bar=false", "data.val_policy=none"]  # fmt: skip


@pytest.fixture(scope="module")
def both_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("both")
    cfg = compose_train_cfg(tmp, [*STAGE1, "stage=both", "fader.trainer.max_epochs=15"])
    return tmp, train(cfg)


def test_both_writes_one_entry_per_stage(both_run: tuple[Path, dict]) -> None:
    tmp, _results = both_run
    stored = load_results(tmp / "out")
    assert set(stored) == {"ear", "fader"}
    assert stored["fader"]["fader"] is True and stored["ear"]["fader"] is False
    for stage in ("ear", "fader"):
        assert stored[stage]["status"] == "ok"
        assert 0.0 <= stored[stage]["metrics"]["pixel_auroc"] <= 1.0
    assert len(list((tmp / "out/overlays/fader").glob("*.png"))) == 8


def test_stage1_weights_bit_identical_after_stage2(both_run: tuple[Path, dict]) -> None:
    _tmp, results = both_run
    stage1 = EARModule.load_from_checkpoint(results["ear"]["checkpoint"]).ear.unet.state_dict()
    stage2 = FADeRModule.load_from_checkpoint(results["fader"]["checkpoint"])
    assert stage2.fader.soft_masker.is_calibrated
    after = stage2.ear.unet.state_dict()
    assert stage1.keys() == after.keys()
    assert all(torch.equal(stage1[k], after[k]) for k in stage1)  # BatchNorm running stats included


def _soft_masks(module: FADeRModule, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    module.eval()
    defect, normal = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            out = module.infer(batch.image)
            patch_gt = F.max_pool2d(batch.mask, module.fader.patch_size)  # 1 where a patch holds any defect
            soft = F.avg_pool2d(out["soft_mask"], module.fader.patch_size)
            defect.append(soft[patch_gt > 0])
            normal.append(soft[(patch_gt == 0) & (batch.label.view(-1, 1, 1, 1) == 0)])
    return torch.cat(defect), torch.cat(normal)


def test_fader_attenuates_defect_patches_more(both_run: tuple[Path, dict]) -> None:
    tmp, results = both_run

    module = FADeRModule.load_from_checkpoint(results["fader"]["checkpoint"])
    dm = datamodule("synthetic", tmp / "data/synthetic", "synth_object", image_size=64, n_train=24, n_test_defect=4)
    dm.setup()
    defect, normal = _soft_masks(module, dm)
    assert defect.mean() < normal.mean() - 0.1


def test_disabled_fader_equals_stage1_exactly(both_run: tuple[Path, dict]) -> None:
    _tmp, results = both_run
    stage1 = EARModule.load_from_checkpoint(results["ear"]["checkpoint"]).eval()
    disabled = fader_module(results["ear"]["checkpoint"], enabled=False).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = stage1.infer(images), disabled.infer(images)
    assert torch.equal(a["recon"], b["recon"]) and torch.equal(a["anomaly_map"], b["anomaly_map"])
    assert (b["soft_mask"] > 0).all() and (b["soft_mask"] <= 1).all()


def test_stage_fader_reuses_a_checkpoint(both_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, results = both_run
    cfg = compose_train_cfg(tmp_path, [*STAGE1, "stage=fader", f"fader.ckpt_path={results['ear']['checkpoint']}",
                                       "fader.trainer.max_epochs=2", "fader.mapping=literal",
                                       "fader.levels=[0]"])  # fmt: skip
    out = train(cfg)
    assert set(out) == {"fader"} and not (tmp_path / "out/checkpoints/ear").exists()


def test_stage_fader_takes_the_stage1_settings_from_its_checkpoint(
    both_run: tuple[Path, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, results = both_run
    ckpt = f"fader.ckpt_path={results['ear']['checkpoint']}"
    # only the data and stage 2's own settings: the U-Net, image size, masking and scoring are the checkpoint's
    data = ["data.category=synth_object", "data.n_train=24", "data.n_test_defect=4", "logger=none",
            "trainer.enable_progress_bar=false", "data.val_policy=none"]  # fmt: skip
    with caplog.at_level(logging.INFO):
        out = train(compose_train_cfg(tmp_path / "alone", [*data, "stage=fader", ckpt, "fader.trainer.max_epochs=15"]))
    assert out["fader"]["metrics"] == results["fader"]["metrics"]
    config = out["fader"]["config"]
    assert config["masking"]["name"] == "none" and config["model"]["unet"]["widths"] == [8, 16, 32, 64]
    assert config["data"]["image_size"] == [64, 64] and config["model"]["scoring"]["normalize"] == "zscore"
    assert "forced" not in out["fader"]
    # the console: an estimate after the second step, then at most 10 epoch lines (every 2nd epoch and the last)
    lines = [r.getMessage() for r in caplog.records if r.name == "fader_lightning.callbacks.progress"]
    assert any(line.startswith("fader: training will take about") for line in lines)
    epochs = [int(line.split()[2].split("/")[0]) for line in lines if line.startswith("fader epoch ")]
    assert epochs == [2, 4, 6, 8, 10, 12, 14, 15]
    assert "fader epoch 15/15: rank_loss" in lines[-1] and "ETA 0 s" in lines[-1]
    # an override that contradicts the checkpoint stops the job before any work, naming both values
    for override, message in (("masking=checkerboard", r"masking.name=checkerboard on the command line, none in"),
                              (TINY_UNET.replace("8,", "4,"), r"model.unet.widths=\[4, 16, 32, 64\] on the command"),
                              ("model.scoring.normalize=none", r"normalize=none on the command line, zscore in the "
                               r"checkpoint.*force=true")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            train(compose_train_cfg(tmp_path / "refused", [*data, "stage=fader", ckpt, override]))
        assert not (tmp_path / "refused" / "out").exists()


def test_missing_and_incompatible_checkpoints(both_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, results = both_run
    with pytest.raises(CheckpointError, match="does not exist; train stage 1 first"):
        fader_module(str(tmp_path / "missing.ckpt"))
    with pytest.raises(CheckpointError, match=r"model.unet.widths=\[8, 16, 32, 64\] but the config asks for"):
        fader_module(results["ear"]["checkpoint"], expected_unet={"widths": [64, 128, 256, 512]})
    not_stage1 = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, not_stage1)
    with pytest.raises(CheckpointError, match="not a stage-1"):
        fader_module(str(not_stage1))
    cfg = compose_train_cfg(tmp_path, [*STAGE1, "stage=fader"])
    with pytest.raises(ConfigError, match=r"fader\.ckpt_path"):
        train(cfg)


def test_fader_checkpoint_loads_without_the_stage1_file(both_run: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    _, results = both_run
    stage1_copy = tmp_path / "ear.ckpt"
    shutil.copyfile(results["ear"]["checkpoint"], stage1_copy)
    module = fader_module(str(stage1_copy), max_cached_images=1)
    stage2_path = tmp_path / "fader.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": "2.6.0"}, stage2_path)  # fmt: skip
    stage1_copy.unlink()
    reloaded = FADeRModule.load_from_checkpoint(stage2_path).eval()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(reloaded.infer(images)["anomaly_map"], module.eval().infer(images)["anomaly_map"])
    # a full cache must not break batches that mix cached and new images
    features, _ = module._features_and_targets(images)
    again, _ = module._features_and_targets(torch.cat([images[:1], torch.rand(1, 3, 64, 64)]))
    assert torch.equal(again[0], features[0]) and len(module._cache) == 1


def test_stage2_at_another_size_than_its_stage1_must_be_forced(both_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, results = both_run
    stage1 = results["ear"]["checkpoint"]
    trained = EARModule.load_from_checkpoint(stage1).trained_size
    other = trained[0] * 2
    data = [o for o in STAGE1 if not o.startswith(("data.image_size", "data.n_train"))] + ["data.n_train=4"]
    overrides = [
        *data,
        "stage=fader",
        f"fader.ckpt_path={stage1}",
        f"data.image_size={other}",
        "fader.trainer.max_epochs=1",
    ]
    with pytest.raises(ConfigError, match=rf"data.image_size=\[{other}, {other}\] on the command line, "
                       rf"\[{trained[0]}, {trained[1]}\] in the checkpoint.*force=true"):  # fmt: skip
        train(compose_train_cfg(tmp_path / "refused", overrides))
    forced = train(compose_train_cfg(tmp_path / "forced", [*overrides, "force=true"]))
    assert FADeRModule.load_from_checkpoint(forced["fader"]["checkpoint"]).trained_size == (other, other)
    assert forced["fader"]["forced"] == {"data.image_size": {"checkpoint": list(trained), "job": [other, other]}}


def test_both_stages_train_in_bf16_mixed_precision(tmp_path: Path) -> None:
    run = ["data.image_size=32", "data.n_train=8", "data.n_test_good=2", "data.n_test_defect=2", "data.size=64",
           TINY_UNET, "stage=both", "trainer.max_epochs=2", "fader.trainer.max_epochs=2", "logger=none",
           "callbacks.overlays.num_samples=0", "model.optimizer.lr=1e-3"]  # fmt: skip
    full = train(compose_train_cfg(tmp_path / "fp32", run))
    mixed = train(compose_train_cfg(tmp_path / "bf16", [*run, "trainer.precision=bf16-mixed"]))
    for stage in ("ear", "fader"):
        assert mixed[stage]["status"] == "ok"
        for key in ("image_auroc", "pixel_auroc"):  # bfloat16 rounding moves the metrics only a little
            assert abs(mixed[stage]["metrics"][key] - full[stage]["metrics"][key]) < 0.1, (stage, key)


def test_a_multi_pass_masking_is_not_applicable_for_the_same_reason_everywhere(tmp_path: Path) -> None:
    reason = single_mask_problem("random_multi")
    assert "masking=random_multi" in reason and "attention, checkerboard, none, saliency" in reason
    assert all(single_mask_problem(name) is None for name in ("attention", "checkerboard", "none", "saliency"))
    overrides = [*STAGE1, "masking=random_multi", "stage=both", "trainer.max_epochs=1", "data.n_train=4"]
    results = train(compose_train_cfg(tmp_path, overrides))
    stored = load_results(tmp_path / "out")
    assert "fader" not in results and stored["fader"]["status"] == "not_applicable"
    assert stored["fader"]["error"] == reason  # the sweep records it, and the module refuses with the same words
    with pytest.raises(ConfigError) as refused:
        fader_module(results["ear"]["checkpoint"])
    assert str(refused.value) == reason


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"margin": -1.0}, r"^fader\.margin=-1\.0 must be >= 0"),
     ({"target": "ssim"}, r"^fader\.target='ssim' is unknown"),
     ({"patch_size": 0}, r"^fader\.patch_size=0 is invalid"),
     ({"levels": [0, 5]}, r"^fader\.levels=\[0, 5\] is invalid"),
     ({"calibration": {"split": "auto", "quantile": 1.5, "median_quantile": 0.5, "temperature_scale": 0.1,
                       "min_temperature": 1e-6}}, r"^fader\.calibration\.quantile=1\.5 is invalid"),
     ({"synthetic": {"copies": 2, "kinds": ["scratch"], "min_side": 0.1, "max_side": 0.2, "tie_below": 0.01}},
      r"^fader\.synthetic\.kinds=\['scratch'\] is invalid")],
)  # fmt: skip
def test_settings_are_checked_once_when_built_and_named_by_their_key(
    both_run: tuple[Path, dict], settings: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        fader_module(both_run[1]["ear"]["checkpoint"], **settings)
