"""Console entry points answer --help without importing torch, and still run their commands."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_command
from fader_lightning.cli import entry
from fader_lightning.cli.export import __doc__ as EXPORT_DOC

PROBE = """
import sys
sys.argv = [{name!r}, "--help"]
from fader_lightning.cli import entry
try:
    entry.{function}()
except SystemExit:
    pass
print("TORCH-IMPORTED" if "torch" in sys.modules else "TORCH-FREE")
"""


@pytest.mark.parametrize(
    ("name", "function", "expected"),
    [("fader-predict", "predict", "Usage:"), ("fader-export", "export", "Usage:"),
     ("fader-check-data", "check_data", "Usage:"), ("fader-train", "train", "fader-train is powered by Hydra"),
     ("fader-eval", "evaluate", "fader-eval is powered by Hydra")],
)  # fmt: skip
def test_help_answers_without_importing_torch(name: str, function: str, expected: str) -> None:
    probe = PROBE.format(name=name, function=function)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout
    assert proc.stdout.strip().endswith("TORCH-FREE")


def test_help_is_the_module_docstring_and_the_config(capsys: pytest.CaptureFixture) -> None:
    assert run_command(entry.export, ["-h"]) == 0
    usage, keys = capsys.readouterr().out.split("\n\nKeys and defaults (conf/export.yaml; ??? = required):\n\n")
    assert usage.strip() == EXPORT_DOC.strip()
    assert "ckpt_path: ???\noutput: ???\nformat: onnx\nmasks: auto\n" in keys and "opset: 17" in keys


def test_other_arguments_run_the_command(capsys: pytest.CaptureFixture) -> None:
    assert run_command(entry.predict, ["ckpt_path=x.ckpt"]) == 1  # the real command ran: it names the missing keys
    assert "missing input=..., output=..." in capsys.readouterr().err


def test_check_data_runs_its_command(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(sys, "argv", ["fader-check-data", "--dataset", "mvtec", "--root", str(tmp_path),
                                      "--category", "bottle"])  # fmt: skip
    assert entry.check_data() == 1  # the real check ran on an empty root and said why
    assert "FAILED" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fader-predict", "fader-export", "fader-eval"])
def test_the_renamed_checkpoint_key_is_named_with_its_new_name(name: str) -> None:
    """``ckpt=`` (before every command used ``ckpt_path``) gets one line with the key to use, before any work."""
    script = Path(sys.executable).with_name(name)  # the console script installed beside this interpreter
    proc = subprocess.run([script, "ckpt=run/last.ckpt", "input=x", "output=y"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"{name}: ckpt= is now ckpt_path= (the key of every command that reads a checkpoint); "
        "use ckpt_path=run/last.ckpt"
    )
