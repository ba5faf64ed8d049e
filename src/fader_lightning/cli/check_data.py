"""``fader-check-data``: decode and verify every file of a category, then print counts or the manual install steps.

Usage:
    fader-check-data --dataset mvtec|visa|mvtec_ad2|mvtec3d|realiad --root DIR --category NAME [--mask-suffix _mask]
        [--split-csv FILE] [--resolution 1024] [--split realiad_jsons] [--views 1 2] [--cache FILE]
        [--materialise DIR]

``--mask-suffix`` is the MVTec-style mask suffix (``''`` for masks named ``<stem>.png``); ``--split-csv`` the VisA
split file (default ``ROOT/split_csv/1cls.csv``); ``--resolution``, ``--split`` and ``--views`` choose Real-IAD's
image release, split set and camera views; ``--cache`` a JSON file remembering files already decoded (by a digest of
their bytes); ``--materialise`` (VisA) writes an MVTec-style copy under DIR. Exit code 0 when the category is complete
and readable, else 1 with the reason and the dataset's manual install steps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fader_lightning.data.mvtec import MVTEC_DOWNLOAD_STEPS, make_mvtec_samples
from fader_lightning.data.mvtec3d import MVTEC3D_DOWNLOAD_STEPS, make_mvtec3d_samples
from fader_lightning.data.mvtec_ad2 import MVTEC_AD2_DOWNLOAD_STEPS, make_mvtec_ad2_samples
from fader_lightning.data.realiad import REALIAD_DOWNLOAD_STEPS, RESOLUTIONS, SPLIT_PREFIX, make_realiad_samples
from fader_lightning.data.samples import Sample, split_counts, validate_samples
from fader_lightning.data.visa import VISA_DOWNLOAD_STEPS, make_visa_samples, materialise_mvtec_layout
from fader_lightning.errors import FaderError

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


READERS: dict[str, tuple[Callable[[argparse.Namespace], list[Sample]], str]] = {
    "mvtec": (lambda args: make_mvtec_samples(args.root, args.category, args.mask_suffix), MVTEC_DOWNLOAD_STEPS),
    "visa": (lambda args: make_visa_samples(args.root, args.category, args.split_csv), VISA_DOWNLOAD_STEPS),
    "mvtec_ad2": (lambda args: make_mvtec_ad2_samples(args.root, args.category), MVTEC_AD2_DOWNLOAD_STEPS),
    "mvtec3d": (lambda args: make_mvtec3d_samples(args.root, args.category), MVTEC3D_DOWNLOAD_STEPS),
    "realiad": (
        lambda args: make_realiad_samples(args.root, args.category, args.resolution, args.split, args.views),
        REALIAD_DOWNLOAD_STEPS,
    ),
}
"""Each dataset's reader (from the command's arguments) and its manual install steps."""


def main(argv: Sequence[str] | None = None) -> int:
    """Check one category of a dataset.

    Args:
        argv: Arguments (defaults to ``sys.argv``).

    Returns:
        0 when the category is complete and readable, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=tuple(READERS), required=True)
    parser.add_argument("--root", type=Path, required=True, help="dataset root")
    parser.add_argument("--category", required=True)
    parser.add_argument("--mask-suffix", default="_mask", help="MVTec-style mask suffix ('' for <stem>.png)")
    parser.add_argument(
        "--split-csv", type=Path, default=None, help="VisA split file (default ROOT/split_csv/1cls.csv)"
    )
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="1024", help="Real-IAD image release")
    parser.add_argument("--split", default=SPLIT_PREFIX, help="Real-IAD split set (realiad_jsons, ..._sv)")
    parser.add_argument("--views", type=int, nargs="+", default=None, help="Real-IAD camera views to keep (1-5)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="JSON file remembering files already decoded (by their bytes' digest)"
    )
    parser.add_argument("--materialise", type=Path, default=None, help="VisA: write an MVTec-style copy under this dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reader, steps = READERS[args.dataset]
    try:
        samples = reader(args)
        validate_samples(samples, cache_file=args.cache)
    except FaderError as err:
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
