"""Where the Hydra configs live (``conf/`` of the source tree)."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
"""str: The folder of ``train.yaml`` and the config groups."""
