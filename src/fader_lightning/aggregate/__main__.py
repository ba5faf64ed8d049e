"""``python -m fader_lightning.aggregate SWEEP_DIR... --name NAME``: same as ``fader-aggregate``."""

import sys

from fader_lightning.cli.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
