"""Numeric settings of a training job are checked before any work, each named with its fix."""

from pathlib import Path

import pytest

from conftest import compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=0", r"trainer\.max_epochs=0 must be an integer of at least 1 \(trainer\.max_time"),
        ("fader.trainer.max_epochs=-2", r"fader\.trainer\.max_epochs=-2 must be an integer of at least 1"),
        ("data.train_batch_size=0", r"data\.train_batch_size=0 must be an integer of at least 1"),
        ("data.eval_batch_size=2.5", r"data\.eval_batch_size=2\.5 must be an integer"),
        ("data.num_workers=-1", r"data\.num_workers=-1 must be an integer of at least 0"),
        ("model.optimizer.lr=0", r"model\.optimizer\.lr=0 must be a finite number above 0"),
        ("fader.optimizer.lr=nan", r"fader\.optimizer\.lr=nan must be a finite number above 0"),
        ("seed=1.5", r"seed=1\.5 must be an integer"),
        ("data.image_size=64.0", r"data\.image_size"),
        ("calibration.target_fpr=1.5", r"calibration\.target_fpr=1\.5 is invalid.*in \(0, 1\)"),
        ("calibration.target_fpr=0", r"calibration\.target_fpr=0 is invalid"),
        ("calibration.method=median", r"calibration\.method='median' is unknown; use one of max, quantile"),
        ("calibration.margin=-1", r"calibration\.margin=-1 is invalid"),
        ("trainer.precision=16-true", r"^trainer\.precision='16-true' is not a precision this project trains with"),
        ("+fader.trainer.precision=64", r"^fader\.trainer\.precision=64 is not a precision .*use 32-true, bf16-mixed"),
        ("trainer.precision=16-mixed", r"^trainer\.precision=16-mixed runs float16 on the CPU.*use bf16-mixed"),
        ("data=base", r"^data=base holds the settings every data config shares, not a dataset; use data=mvtec"),
    ],
)
def test_a_wrong_setting_is_named_before_any_work(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_train_cfg(tmp_path, ["stage=both", override])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # nothing ran, nothing was made


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "refused"), [(True, False, False), (False, True, False), (False, False, True)]
)
def test_bf16_is_refused_only_on_a_cpu_without_bf16_units(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, refused: bool
) -> None:
    import torch

    from fader_lightning.jobs.settings_check import check_precision, cpu_bf16_units

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert cpu_bf16_units() == ("AMX" if amx else "AVX512-BF16" if avx512_bf16 else None)
    if refused:
        with pytest.raises(
            ConfigError, match=r"^trainer\.precision=bf16-mixed: this CPU has no bfloat16 units .*32-true"
        ):
            check_precision("trainer.precision", "bf16-mixed", "cpu")
    else:
        check_precision("trainer.precision", "bf16-mixed", "cpu")
    check_precision("trainer.precision", "32-true", "cpu")  # float32 runs everywhere
    check_precision("trainer.precision", 32, "cpu")
