"""``fader-aggregate``: turn training sweeps into the paper's tables, a chart and a provenance record.

Every job of a sweep (``fader-train -m ...``) leaves ``metrics.json`` (one entry per stage) next to its ``.hydra/``
folder. This package finds the jobs, groups them by (category, masking method, variant, stage), averages the seeds of
a group (mean ± *sample* standard deviation, ``ddof=1``, with n) and writes, under ``<out>/<name>/``:

* ``table.md`` and ``table.tex``: the paper's layout, categories × masking method × {EAR, EAR+FADeR} × metric, in %
  (the LaTeX has a ``tab:<name>`` label, the best value per metric and row in bold, and fits the text width),
* ``table.csv``: tidy, one line per category × masking × stage × metric, with the run folders, seeds and commits,
* ``chart.png`` (and ``chart.pdf``, ``chart.svg`` for papers): image AUROC per category, EAR vs EAR+FADeR for each
  masking method,
* ``provenance.json``: for each cell, every run it came from (folder, seed, status, commit, overrides, error).

Nothing is dropped: a failed job shows as ``failed``, a job without results as ``—``, and a cell or mean built from an
incomplete set of runs is marked ``*``. A sweep's ``multirun.yaml`` gives the expected grid, so jobs that never
started still show up as missing cells.

The variant of a job is its values of the override keys that differ between the jobs collected (besides
``data.category``, ``masking``, ``seed`` and ``stage``), e.g. ``fader.patch_size=4`` in an ablation: variants are never
averaged together, each (masking method, variant) pair is a column group (``saliency [fader.patch_size=4]``), and the
CSV and provenance gain a ``variant`` field (see :mod:`fader_lightning.aggregate.table`). A sweep without such keys
gives exactly the table it gave before variants existed.

Examples:
    fader-aggregate logs/train/multiruns/2024-05-01_10-00-00-000000 --name mvtec_main --aupro
    fader-aggregate sweep_a sweep_b --name ablation --wandb
"""

from fader_lightning.aggregate.reading import collect
from fader_lightning.aggregate.report import aggregate
from fader_lightning.aggregate.table import Cell, Row, Stat, Table, build_table, summarize
from fader_lightning.aggregate.wandb_log import log_to_wandb, wandb_mode

__all__ = [
    "Cell",
    "Row",
    "Stat",
    "Table",
    "aggregate",
    "build_table",
    "collect",
    "log_to_wandb",
    "summarize",
    "wandb_mode",
]
