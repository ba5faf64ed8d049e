"""Console entry points that answer ``-h``/``--help`` before importing torch.

``fader-predict`` and ``fader-export`` print their module's docstring (read from the source file) and their config's
keys with the defaults; ``fader-check-data`` prints its docstring; ``fader-train`` and ``fader-eval`` print Hydra's
help for the same config through an app that never runs. Any other call imports the command's module and runs it,
so ``--help`` answers in well under two seconds while the commands themselves are unchanged.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

HELP_FLAGS: tuple[str, ...] = ("-h", "--help", "--hydra-help")
RENAMED_KEYS: dict[str, str] = {"ckpt": "ckpt_path"}
"""Keys a command line may still use from before every command named them alike (until 2027-06-01), and their names."""


def renamed_key(argv: list[str]) -> str | None:
    """The message for an argument that uses a renamed key (``ckpt=...``), else ``None``.

    Args:
        argv: Arguments after the program name.

    Returns:
        One line naming the key and its name now.
    """
    for arg in argv:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if value and key in RENAMED_KEYS:
            new = RENAMED_KEYS[key]
            return f"{key}= is now {new}= (the key of every command that reads a checkpoint); use {new}={value}"
    return None


def wants_help(argv: list[str]) -> bool:
    """Whether the command line asks for help.

    Args:
        argv: Arguments after the program name.

    Returns:
        ``True`` when one of :data:`HELP_FLAGS` is among them.
    """
    return any(arg in HELP_FLAGS for arg in argv)


def module_docstring(module: str) -> str:
    """The docstring of a module, read from its source without importing it.

    Args:
        module: Dotted name of a module (not a package) of this project.

    Returns:
        The docstring (empty when it has none).
    """
    # the file is located from this package's folder: finding a submodule's spec would import its parent packages
    top, *parts = module.split(".")
    source = Path(importlib.util.find_spec(top).origin).parent.joinpath(*parts).with_suffix(".py")
    return ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""


def _argument_command(module: str) -> int:
    if wants_help(sys.argv[1:]):
        sys.stdout.write(module_docstring(module) + "\n")
        return 0
    return importlib.import_module(module).main()


def _usage_and_defaults(module: str, config_name: str) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from fader_lightning.configs import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        defaults = OmegaConf.to_yaml(compose(config_name=config_name))
    sys.stdout.write(
        f"{module_docstring(module)}\n\nKeys and defaults (conf/{config_name}.yaml; ??? = required):\n\n{defaults}"
    )


def predict() -> None:
    """``fader-predict`` (see :mod:`fader_lightning.cli.predict`): its usage and keys without loading the models."""
    _hydra_command("fader_lightning.cli.predict", "predict", usage=True)


def export() -> None:
    """``fader-export`` (see :mod:`fader_lightning.cli.export`): its usage and keys without loading the models."""
    _hydra_command("fader_lightning.cli.export", "export", usage=True)


def _hydra_command(module: str, config_name: str, usage: bool = False) -> None:
    renamed = renamed_key(sys.argv[1:])
    if renamed:
        sys.stderr.write(f"{Path(sys.argv[0]).name}: {renamed}\n")
        raise SystemExit(2)
    if usage and any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        _usage_and_defaults(module, config_name)
        return
    if wants_help(sys.argv[1:]):
        import hydra

        from fader_lightning.configs import CONFIG_DIR

        hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(lambda cfg: None)()
        return
    importlib.import_module(module).main()


def train() -> None:
    """``fader-train`` (see :mod:`fader_lightning.cli.train`); Hydra's ``--help`` without loading the models."""
    _hydra_command("fader_lightning.cli.train", "train")


def evaluate() -> None:
    """``fader-eval`` (see :mod:`fader_lightning.cli.evaluate`); Hydra's ``--help`` without loading the models."""
    _hydra_command("fader_lightning.cli.evaluate", "eval")


def check_data() -> int:
    """``fader-check-data`` (see :mod:`fader_lightning.cli.check_data`)."""
    return _argument_command("fader_lightning.cli.check_data")
