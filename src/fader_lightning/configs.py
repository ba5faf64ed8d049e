"""Where the Hydra configs live: ``fader_lightning/conf``, shipped with the package.

In the source tree that folder is a link to the repository's ``conf/``, so an editable install reads ``conf/``
directly and an installed wheel (``pip install .``) carries its own copy; either way the commands and
:func:`fader_lightning.api.train` compose the same configs from any working directory.
"""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
"""str: The folder of ``train.yaml``, ``eval.yaml`` and the config groups."""
