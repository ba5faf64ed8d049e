"""``fader-check-data``: decode and verify every file of a category, then print counts or the manual install steps.

Usage:
    fader-check-data --dataset mvtec|visa --root DIR --category NAME [--mask-suffix _mask] [--split-csv FILE]
        [--cache FILE] [--materialise DIR]

``--mask-suffix`` is the MVTec-style mask suffix (``''`` for masks named ``<stem>.png``); ``--split-csv`` the VisA
split file (default ``ROOT/split_csv/1cls.csv``); ``--cache`` a JSON file remembering files already decoded (by a
digest of their bytes); ``--materialise`` (VisA) writes an MVTec-style copy under DIR. Exit code 0 when the category
is complete and readable, else 1 with the reason and the dataset's manual install steps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fader_lightning.data.mvtec import MVTEC_DOWNLOAD_STEPS, make_mvtec_samples
from fader_lightning.data.samples import split_counts, validate_samples
from fader_lightning.data.visa import VISA_DOWNLOAD_STEPS, make_visa_samples, materialise_mvtec_layout
from fader_lightning.errors import DataError

log = logging.getLogger(__name__)


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """Render per-split, per-defect counts as an aligned text table.

    Args:
        counts: Output of :func:`~fader_lightning.data.samples.split_counts`.

    Returns:
        The table, one line per (split, defect) plus a total per split.
    """
    lines = []
    for split, defects in counts.items():
        for defect, count in defects.items():
            lines.append(f"  {split:<6} {defect:<24} {count:>6}")
        lines.append(f"  {split:<6} {'(total)':<24} {sum(defects.values()):>6}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Check one category of a dataset.

    Args:
        argv: Arguments (defaults to ``sys.argv``).

    Returns:
        0 when the category is complete and readable, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("mvtec", "visa"), required=True)
    parser.add_argument("--root", type=Path, required=True, help="dataset root")
    parser.add_argument("--category", required=True)
    parser.add_argument("--mask-suffix", default="_mask", help="MVTec-style mask suffix ('' for <stem>.png)")
    parser.add_argument(
        "--split-csv", type=Path, default=None, help="VisA split file (default ROOT/split_csv/1cls.csv)"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="JSON file remembering files already decoded (by their bytes' digest)"
    )
    parser.add_argument("--materialise", type=Path, default=None, help="VisA: write an MVTec-style copy under this dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dataset == "mvtec":
            samples = make_mvtec_samples(args.root, args.category, args.mask_suffix)
        else:
            samples = make_visa_samples(args.root, args.category, args.split_csv)
        validate_samples(samples, cache_file=args.cache)
    except DataError as err:
        steps = MVTEC_DOWNLOAD_STEPS if args.dataset == "mvtec" else VISA_DOWNLOAD_STEPS
        sys.stderr.write(f"FAILED: {err}\n")
        if steps not in str(err):
            sys.stderr.write(f"\n{steps}\n")
        return 1
    sys.stdout.write(
        f"OK: {args.dataset} '{args.category}' under {args.root}\n{format_counts(split_counts(samples))}\n"
    )
    if args.materialise is not None and args.dataset == "visa":
        out = materialise_mvtec_layout(samples, args.materialise)
        sys.stdout.write(f"MVTec-style copy written to {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
