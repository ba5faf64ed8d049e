from pathlib import Path

from fader_lightning.cli.check_data import main


def test_check_ok_prints_counts(synthetic_mvtec: Path, capsys) -> None:
    assert main(["--dataset", "mvtec", "--root", str(synthetic_mvtec), "--category", "synth_object"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "spot" in out and " 12" in out


def test_check_missing_root_prints_steps(tmp_path: Path, capsys) -> None:
    assert main(["--dataset", "visa", "--root", str(tmp_path / "visa"), "--category", "candle"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "visa") in err and "split_csv/1cls.csv" in err and "spot-diff" in err


def test_check_visa_materialise(synthetic_visa: Path, tmp_path: Path, capsys) -> None:
    args = ["--dataset", "visa", "--root", str(synthetic_visa), "--category", "synth_object"]
    assert main([*args, "--materialise", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out/synth_object/ground_truth/bad").glob("*_mask.png"))) == 4
