"""Every yaml in conf/ composes, and what can be built on a CPU machine is instantiated."""

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, get_method, instantiate
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, compose_train_cfg
from fader_lightning.configs import checkpoint_name, literal_settings
from fader_lightning.models import FADeRModule
from fader_lightning.models.calibration import Calibration

GROUPS = [
    "data",
    "model",
    "masking",
    "fader",
    "trainer",
    "profile",
    "recipe",
    "logger",
    "callbacks",
    "debug",
    "experiment",
]


SHARED_ONLY = {"data": "base"}
"""Options that hold the settings the group's configs share, not a choice of their own."""


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml") if p.stem != SHARED_ONLY.get(group))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(tmp_path: Path, group: str, option: str) -> None:
    overrides = [f"{group}={option}"]
    if group == "data" and option == "folder":
        overrides.append(f"data.normal_dir={tmp_path}")
    cfg = compose_train_cfg(tmp_path, overrides)
    assert cfg.get(group) is not None or group in ("recipe", "logger", "debug", "experiment")
    for node in (cfg.data, cfg.model, cfg.trainer):
        assert get_class(node._target_)
    assert get_method(cfg.fader._target_) == FADeRModule.from_config  # the flat node, sorted into its groups
    trainer_args = set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(cfg.trainer) - {"_target_"} <= trainer_args


@pytest.mark.parametrize("option", _options("data"))
def test_data_modules_instantiate(tmp_path: Path, option: str) -> None:
    extra = [f"data.normal_dir={tmp_path}"] if option == "folder" else []
    cfg = compose_train_cfg(tmp_path, [f"data={option}", *extra])
    datamodule = instantiate(cfg.data)
    assert datamodule.image_size == (cfg.data.image_size, cfg.data.image_size)


@pytest.mark.parametrize("option", [o for o in _options("masking") if o != "attention"])
def test_model_instantiates_with_each_masking(tmp_path: Path, option: str) -> None:
    cfg = compose_train_cfg(tmp_path, [f"masking={option}", "model.unet.widths=[8,16,32,64]"])
    module = instantiate(cfg.model)
    out = module.infer(torch.rand(1, 3, 32, 32))
    assert out["anomaly_map"].shape == (1, 1, 32, 32)


def test_cpu_trainer_loggers_and_callbacks_instantiate(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, ["logger=csv"])
    trainer = instantiate(cfg.trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert [type(instantiate(spec)).__name__ for spec in cfg.logger.values()] == ["CSVLogger"]
    names = {type(instantiate(spec)).__name__ for spec in cfg.callbacks.values()}
    assert names == {"AtomicModelCheckpoint", "EpochLog", "OverlayWriter"}


@pytest.mark.parametrize("launcher", ["joblib", "slurm"])
def test_launchers_compose(tmp_path: Path, launcher: str) -> None:
    cfg = compose_train_cfg(tmp_path, [f"hydra/launcher={launcher}", "trainer=gpu"])
    assert get_class(cfg.hydra.launcher._target_)
    assert cfg.trainer.accelerator == "gpu"
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1


def test_table_experiments_sweep_categories_and_methods(tmp_path: Path) -> None:
    from fader_lightning.data import MVTEC_CATEGORIES, VISA_CATEGORIES

    mvtec = compose_train_cfg(tmp_path, ["experiment=table_mvtec"])
    visa = compose_train_cfg(tmp_path, ["experiment=table_visa"])
    assert mvtec.hydra.sweeper.params["data.category"].split(",") == list(MVTEC_CATEGORIES)
    assert visa.hydra.sweeper.params["data.category"].split(",") == list(VISA_CATEGORIES)
    assert mvtec.stage == visa.stage == "both"
    ablation = compose_train_cfg(tmp_path, ["experiment=ablation_levels"])
    assert ablation.reuse_stage1 is True
    for table in ("table_mvtec", "table_visa", "table_riad", "table_demo"):  # the measured recipe, with its budget
        cfg = compose_train_cfg(tmp_path, [f"experiment={table}"])
        assert cfg.trainer.max_time and cfg.model.scoring.normalize == "zscore", table
    by_category = compose_train_cfg(tmp_path, ["experiment=table_mvtec"]).augmentation_by_category
    for category, preset in by_category.items():  # the table's per-category augmentation, and none elsewhere
        cfg = compose_train_cfg(tmp_path, ["experiment=table_mvtec", f"data.category={category}"])
        assert cfg.augmentation == preset and len(cfg.data.train_augmentations) > 0
    unlisted = next(c for c in MVTEC_CATEGORIES if c not in by_category)
    cfg = compose_train_cfg(tmp_path, ["experiment=table_mvtec", f"data.category={unlisted}"])
    assert cfg.augmentation == "none" and len(cfg.data.train_augmentations) == 0
    riad = compose_train_cfg(tmp_path, ["experiment=table_riad"])
    assert riad.masking.name == "random_multi" and riad.model.fill.fill == "zero"  # RIAD hides with zeros


def test_multi_device_jobs_are_refused_in_a_local_multirun(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fader_lightning.errors import ConfigError
    from fader_lightning.jobs.stages import check_launch

    cfg = compose_train_cfg(tmp_path, ["trainer=ddp"])
    check_launch(cfg)  # a single run may launch its DDP ranks
    OmegaConf.set_readonly(cfg.hydra, False)
    cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(ConfigError, match=r"trainer\.devices=2 in a multirun"):
        check_launch(cfg)
    slurm = compose_train_cfg(tmp_path, ["trainer=ddp", "hydra/launcher=slurm"])
    OmegaConf.set_readonly(slurm.hydra, False)
    slurm.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(slurm)
    check_launch(slurm)


def test_augmentation_presets_compose_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    import albumentations as A

    from fader_lightning.errors import ConfigError
    from fader_lightning.jobs.train import train

    flips = instantiate(compose_train_cfg(tmp_path, ["augmentation=flip"]).data.train_augmentations)
    assert [type(t) for t in flips] == [A.Affine, A.HorizontalFlip, A.VerticalFlip]
    assert compose_train_cfg(tmp_path, []).data.train_augmentations == []  # off by default
    with pytest.raises(ConfigError, match="augmentation='rotate' is not a preset; use one of none, shift, flip"):
        train(compose_train_cfg(tmp_path, ["augmentation=rotate"]))


def test_literal_settings_are_what_a_file_states_itself() -> None:
    fader = literal_settings("fader/default", exclude=("trainer",))
    raw = OmegaConf.load(Path(CONFIG_DIR) / "fader" / "default.yaml")
    assert fader["patch_size"] == raw.patch_size and fader["calibration"] == OmegaConf.to_container(raw.calibration)
    assert "trainer" not in fader and "defaults" not in fader and "_target_" not in fader
    assert "optimizer" not in fader  # an object to instantiate
    assert "seed" not in fader and "expected_unet" not in fader  # ${...}: they belong to a composed job
    folder = literal_settings("data/folder")
    assert "normal_dir" not in folder  # ???: the command line gives it
    assert folder["category"] == OmegaConf.load(Path(CONFIG_DIR) / "data" / "folder.yaml").category


def _compose(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("overrides", "size", "widths", "epochs"),
    [
        ([], 128, [16, 32, 64, 128], (60, 30)),
        (["trainer=gpu"], 256, [64, 128, 256, 512], (100, 100)),
        (["trainer=ddp"], 256, [64, 128, 256, 512], (100, 100)),
        (["profile=gpu"], 256, [64, 128, 256, 512], (100, 100)),
        (["trainer=gpu", "data.image_size=192", "trainer.max_epochs=7"], 192, [64, 128, 256, 512], (7, 100)),
    ],
)
def test_the_default_is_the_recipe_at_the_trainers_size(overrides, size, widths, epochs) -> None:
    cfg = _compose(["data=mvtec", *overrides])
    recipe = OmegaConf.load(Path(CONFIG_DIR) / "recipe" / "stage1.yaml")
    assert cfg.stage == "both" and cfg.masking.name == "checkerboard"
    assert cfg.data.val_policy == recipe.data.val_policy == "auto"  # from_train on MVTec AD (no validation split)
    assert cfg.data.train_batch_size == recipe.data.train_batch_size == 8
    assert cfg.model.optimizer.lr == recipe.model.optimizer.lr == 1e-3
    assert cfg.model.scoring.normalize == "zscore" and cfg.model.scoring.std_floor == 1.0
    assert (cfg.data.image_size, list(cfg.model.unet.widths)) == (size, widths)
    assert (cfg.trainer.max_epochs, cfg.fader.trainer.max_epochs) == epochs


def test_the_paper_is_one_switch_away() -> None:
    cfg = _compose(["data=mvtec", "recipe=paper"])
    assert cfg.masking.name == "attention" and cfg.model.scoring.normalize == "none"
    assert (cfg.model.optimizer.lr, cfg.data.train_batch_size, cfg.data.val_policy) == (1e-4, 16, "none")
    assert (cfg.data.image_size, list(cfg.model.unet.widths), cfg.trainer.max_epochs) == (256, [64, 128, 256, 512], 100)
    assert cfg.fader.target == "msgms" and cfg.fader.calibration.quantile == 0.99


@pytest.mark.parametrize("launcher", ["basic", "joblib", "slurm"])
@pytest.mark.parametrize("experiment", [None, *[o for o in _options("experiment") if o.startswith("table_")]])
def test_sweep_folders_resolve_before_hydra_sets_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str, experiment: str | None
) -> None:
    """A multirun resolves ``hydra.sweep.dir`` (and submitit's folder) before it sets ``HydraConfig``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FADER_ROOT", raising=False)
    overrides = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    cfg = _compose([*overrides, *([f"experiment={experiment}"] if experiment else []), "hydra.mode=MULTIRUN"])
    HydraConfig.instance().cfg = None  # as when a sweep starts: nothing set yet
    sweep = Path(cfg.hydra.sweep.dir)
    task = cfg.task_name
    assert sweep.parent == tmp_path / "logs" / task / "multiruns"
    if launcher == "slurm":
        assert cfg.hydra.launcher.submitit_folder.startswith(str(sweep))


def test_several_loggers_at_once(tmp_path: Path) -> None:
    for choice in ("[csv,wandb]", "many"):
        cfg = compose_train_cfg(tmp_path, [f"logger={choice}"])
        assert set(cfg.logger) == {"csv", "wandb"}


def test_an_evaluation_folder_is_named_after_the_checkpoints_run(tmp_path: Path) -> None:
    single = tmp_path / "runs" / "mvtecad-bottle-checkerboard-s0" / "2026-01-01_00-00-00" / "checkpoints" / "ear"
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    job = sweep / "3_mvtecad-grid-saliency-s2" / "checkpoints" / "fader"
    for folder in (single, job):
        folder.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    assert checkpoint_name(str(single / "last.ckpt")) == "mvtecad-bottle-checkerboard-s0-ear"
    assert checkpoint_name(str(job / "last.ckpt")) == "mvtecad-grid-saliency-s2-fader"  # not the sweep's time
    assert checkpoint_name(str(tmp_path / "model.ckpt")) == "model" and checkpoint_name(None) == "checkpoint"


@pytest.mark.parametrize(
    ("command", "node", "source", "path"),
    [("eval", "scoring", "model/ear", "scoring"), ("eval", "speed", "model/ear", "speed"),
     ("eval", "calibration", "calibration/default", None), ("predict", "calibration", "calibration/default", None)],
)  # fmt: skip
def test_the_commands_replace_training_settings_key_by_key(command: str, node: str, source: str, path: str) -> None:
    """fader-eval and fader-predict replace training's settings one by one: the same keys, all null (keep)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        composed = compose(config_name=command, overrides=["ckpt_path=x.ckpt"])[node]
    training = OmegaConf.load(Path(CONFIG_DIR) / f"{source}.yaml")
    training = training[path] if path else training
    assert list(composed) == [key for key in training if key != "defaults"]
    assert all(value is None for value in composed.values()), (command, node)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # so every one of them may be given
        given = compose(config_name=command, overrides=["ckpt_path=x.ckpt", *(f"{node}.{key}=1" for key in composed)])
    assert all(value == 1 for value in given[node].values())


def test_the_shipped_calibration_is_valid() -> None:
    settings = literal_settings("calibration/default")
    assert set(settings) == set(Calibration.__dataclass_fields__)
    Calibration.of(settings)


@pytest.mark.parametrize(
    ("function", "parameter", "config", "key"),
    [
        ("fader_lightning.models.fader.model.FADeRModel", "attenuate_masked", "fader/default", "attenuate_masked"),
        ("fader_lightning.models.fader.model.FADeRModel", "patch_size", "fader/default", "patch_size"),
        ("fader_lightning.models.fader.model.SoftMask.calibrate", "quantile", "fader/default", "calibration.quantile"),
        ("fader_lightning.models.skip_dropout.PatchSkipDropout", "levels", "model/ear", "skip_dropout.levels"),
        ("fader_lightning.models.skip_dropout.PatchSkipDropout", "patch_size", "model/ear", "skip_dropout.patch_size"),
    ],
)
def test_pure_torch_defaults_agree_with_conf(function: str, parameter: str, config: str, key: str) -> None:
    """A default of a pure-torch class is the value conf/ gives it (or there is none, as for PatchSkipDropout's p)."""
    module, _, name = function.rpartition(".")
    target = get_class(function) if name[0].isupper() else getattr(get_class(module), name)
    default = inspect.signature(target).parameters[parameter].default
    value = OmegaConf.select(OmegaConf.load(Path(CONFIG_DIR) / f"{config}.yaml"), key)
    assert (list(default) if isinstance(default, tuple) else default) == value, (function, parameter)
