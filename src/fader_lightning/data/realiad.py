"""Real-IAD read through its official JSON split files, one image per view.

Layout (``ROOT`` holds the images at one resolution and the split files)::

    realiad_1024/<category>/OK/S0001/<category>_0001_OK_C1_<time>.jpg            normal, views C1..C5
    realiad_1024/<category>/NG/<defect>/S0044/<...>_NG_<defect>_C1_<time>.jpg    anomalous, its mask .png beside it
    realiad_jsons/<category>.json            the multi-view split (also realiad_jsons_sv: single view, and
                                             realiad_jsons_fuiad_<r>: training sets with a share r of anomalies)

Some releases nest the split folders one level deeper (``realiad_jsons/realiad_jsons_sv/<category>.json``); both are
found. A split file is ``{"meta": {"prefix": ..., "normal_class": "OK"}, "train": [...], "test": [...]}``, each entry
``{"category", "anomaly_class", "image_path", "mask_path"}`` with ``image_path`` relative to the category's folder.
As in the official evaluation, a test image is anomalous when its class is not ``normal_class`` and it has a mask.
Paths come from the split file only: file names differ between categories (``audiojack__0001`` and ``toy_brick_0258``).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fader_lightning.data.mvtec import RootedDataModule
from fader_lightning.data.samples import ANOMALOUS, GOOD, NORMAL, Sample
from fader_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REALIAD_CATEGORIES: tuple[str, ...] = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint", "mounts", "pcb",
    "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll", "regulator", "rolled_strip_base",
    "sim_card_set", "switch", "tape", "terminalblock", "toothbrush", "toy", "toy_brick", "transistor1", "u_block",
    "usb", "usb_adaptor", "vcpill", "wooden_beads", "woodstick", "zipper",
)  # fmt: skip
RESOLUTIONS: tuple[str, ...] = ("256", "512", "1024", "raw")
VIEWS: tuple[int, ...] = (1, 2, 3, 4, 5)
SPLIT_PREFIX = "realiad_jsons"
ENTRY_KEYS = ("anomaly_class", "image_path")
VIEW_PATTERN = re.compile(r"_C(\d)_")

REALIAD_DOWNLOAD_STEPS = """\
Real-IAD cannot be downloaded automatically. To install it:
  1. Request access at https://huggingface.co/datasets/Real-IAD/Real-IAD (the licence is granted by its authors),
     then download realiad_1024 (or realiad_256 / realiad_512 / realiad_raw) and realiad_jsons.
  2. Unzip so that ROOT/realiad_1024/<category>/{OK,NG}/... and ROOT/realiad_jsons/<category>.json exist
     (realiad_jsons_sv and realiad_jsons_fuiad_* beside it, or nested inside realiad_jsons/, both work).
  3. Point the project at ROOT: data=realiad data.root=ROOT, or put ROOT at $FADER_DATA_DIR/realiad.
  4. Check it: fader-check-data --dataset realiad --root ROOT --category audiojack"""


def check_settings(resolution: str, split: str, views: Sequence[int] | None) -> None:
    """Refuse a resolution, split set or view that Real-IAD does not publish.

    Raises:
        ConfigError: Naming the key and its valid values.
    """
    if str(resolution) not in RESOLUTIONS:
        raise ConfigError(
            f"data.resolution={resolution!r} is not a Real-IAD release; use one of {', '.join(RESOLUTIONS)}"
        )
    if not str(split).startswith(SPLIT_PREFIX):
        raise ConfigError(
            f"data.split={split!r} is not a Real-IAD split set; use realiad_jsons (multi-view), realiad_jsons_sv "
            "(single view) or realiad_jsons_fuiad_<ratio> (noisy training sets)"
        )
    bad = [view for view in views or () if view not in VIEWS]
    if bad:
        raise ConfigError(f"data.views lists {bad[0]!r}; Real-IAD's views are 1 to 5 (C1..C5), or null for all")


def split_file(root: Path, split: str, category: str) -> Path:
    """Where a category's split file is: ``ROOT/<split>/<category>.json`` or nested in ``ROOT/realiad_jsons/``.

    Raises:
        DataError: When neither exists (the message names both places).
    """
    places = [root / split / f"{category}.json", root / SPLIT_PREFIX / split / f"{category}.json"]
    found = next((path for path in places if path.is_file()), None)
    if found is None:
        close = difflib.get_close_matches(category, REALIAD_CATEGORIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close and close[0] != category else ""
        raise DataError(
            f"Real-IAD split file for {category!r}{hint} not found at {places[0]} nor {places[1]}; unzip {split}.zip "
            f"there or choose another set with data.split=...\n{REALIAD_DOWNLOAD_STEPS}"
        )
    return found


def read_split_file(path: Path) -> dict[str, Any]:
    """Read and check a Real-IAD split file (untrusted: only its plain values are used).

    Raises:
        DataError: When it is not JSON or lacks ``meta``, ``train`` or ``test``, or an entry lacks a key.
    """
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"Real-IAD split file {path} cannot be read as JSON ({err}); unzip it again") from err
    if not isinstance(content, dict) or not all(isinstance(content.get(key), list) for key in ("train", "test")):
        raise DataError(
            f'{path} is not a Real-IAD split file: expected {{"meta": {{...}}, "train": [...], "test": [...]}}'
        )
    meta = content.get("meta")
    if not isinstance(meta, dict):
        raise DataError(f'{path} has no "meta" object (prefix, normal_class); unzip the official split file again')
    for split in ("train", "test"):
        for index, entry in enumerate(content[split]):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ENTRY_KEYS):
                raise DataError(
                    f"{path}: {split}[{index}] is not an entry with string {' and '.join(ENTRY_KEYS)}; unzip the "
                    "official split file again"
                )
    return content


def view_of(path: str) -> int | None:
    """The camera view (1-5) of a Real-IAD file name ``..._C<v>_<time>.jpg``, or ``None``."""
    found = VIEW_PATTERN.findall(Path(path).name)
    return int(found[-1]) if found else None


def make_realiad_samples(
    root: Path, category: str, resolution: str = "1024", split: str = SPLIT_PREFIX, views: Sequence[int] | None = None
) -> list[Sample]:
    """Build the sample table of one Real-IAD category from its split file.

    Args:
        root: Folder holding ``realiad_<resolution>/`` and the split folders.
        category: Category name.
        resolution: Which image release: ``256``, ``512``, ``1024`` or ``raw``.
        split: The split set, e.g. ``realiad_jsons`` or ``realiad_jsons_sv``.
        views: Camera views to keep (1-5); ``None`` keeps every view.

    Returns:
        Train samples then test samples, in the split file's order.

    Raises:
        DataError: When the images, the split file or a file it names is missing, or the file is malformed.
    """
    root = Path(root)
    check_settings(resolution, split, views)
    image_dir = root / f"realiad_{resolution}"
    if not image_dir.is_dir():
        releases = root.glob("realiad_*") if root.is_dir() else []
        present = sorted(p.name for p in releases if p.is_dir() and not p.name.startswith(SPLIT_PREFIX))
        raise DataError(
            f"{image_dir} does not exist (present: {', '.join(present) or 'nothing'}); set data.resolution to the "
            f"release you have, or unzip it there.\n{REALIAD_DOWNLOAD_STEPS}"
        )
    path = split_file(root, split, category)
    content = read_split_file(path)
    meta = content["meta"]
    normal_class = str(meta.get("normal_class") or "OK")
    prefix = str(meta.get("prefix") or category).strip("/")
    base = image_dir / prefix if (image_dir / prefix).is_dir() else image_dir / category
    samples, unlabelled, noisy = [], 0, 0
    for split_name in ("train", "test"):
        for index, entry in enumerate(content[split_name]):
            view = view_of(entry["image_path"]) if views else None
            if views and view is None:  # dropping it would silently change the test set
                raise DataError(
                    f"{path}: {split_name}[{index}] names {entry['image_path']}, whose name carries no camera view "
                    "(_C<1-5>_), and data.views keeps images by it; set data.views=null to keep every image"
                )
            if views and view not in views:
                continue
            image = base / entry["image_path"]
            mask = base / entry["mask_path"] if isinstance(entry.get("mask_path"), str) and entry["mask_path"] else None
            anomalous = entry["anomaly_class"] != normal_class
            for file in (image, mask):
                if file is not None and not file.is_file():
                    raise DataError(
                        f"{path}: {split_name}[{index}] names {file}, which does not exist; unzip the full "
                        f"realiad_{resolution} release for {category!r}"
                    )
            if split_name == "train":
                noisy += anomalous  # the fuiad sets put anomalies among the training images on purpose
                samples.append(Sample(image, "train", NORMAL, GOOD, None, category))
            elif anomalous and mask is not None:
                samples.append(Sample(image, "test", ANOMALOUS, entry["anomaly_class"], mask, category))
            else:
                unlabelled += anomalous
                samples.append(Sample(image, "test", NORMAL, GOOD, None, category))
    if noisy:
        log.warning("%s: %d training images of %s are anomalous (%s): trained on as normal, as the set intends",
                    category, noisy, path.name, split)  # fmt: skip
    if unlabelled:
        log.warning("%s: %d test images of class other than %s have no mask and count as normal, as in the official "
                    "evaluation", category, unlabelled, normal_class)  # fmt: skip
    if not samples:
        raise DataError(f"{path} lists no image of views {list(views or VIEWS)} for {category!r}; check data.views")
    return samples


class RealIADDataModule(RootedDataModule):
    """Real-IAD, official JSON splits, each view an image of its own.

    Args:
        root: Folder holding ``realiad_<resolution>/`` and the split folders.
        category: Category name, a list of them (one unified model) or ``all``.
        resolution: Image release: ``256``, ``512``, ``1024`` or ``raw``.
        split: Split set: ``realiad_jsons`` (multi-view), ``realiad_jsons_sv`` or ``realiad_jsons_fuiad_<r>``.
        views: Camera views to keep (1-5), or ``None`` for all.
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.
    """

    known_categories = REALIAD_CATEGORIES
    config_name = "realiad"

    def __init__(
        self,
        root: str | Path,
        category: str | Sequence[str],
        *,
        resolution: str | int,
        split: str,
        views: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        views = list(views) if views is not None else None
        check_settings(str(resolution), split, views)
        super().__init__(root, category, **kwargs)
        self.resolution, self.split, self.views = str(resolution), split, views

    def check_categories(self) -> None:
        """Refuse the listed categories that have no split file, all of them in one message."""
        missing = []
        for category in self.categories:
            try:
                split_file(self.root, self.split, category)
            except DataError:
                missing.append(category)
        if missing:
            raise ConfigError(
                f"data.category lists {', '.join(map(repr, missing))}, which have no {self.split} split file under "
                f"data.root={self.root}; Real-IAD's categories: {', '.join(REALIAD_CATEGORIES)}"
            )

    def category_samples(self, category: str) -> list[Sample]:
        """Build one category's sample table from its split file."""
        return make_realiad_samples(self.root, category, self.resolution, self.split, self.views)
