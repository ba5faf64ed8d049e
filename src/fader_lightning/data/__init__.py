"""Datasets and LightningDataModules: MVTec AD, VisA, plain folders and generated sets."""

from fader_lightning.data.configured import from_config
from fader_lightning.data.datamodule import VAL_POLICIES, AnomalyDataModule
from fader_lightning.data.dataset import AnomalyDataset, Batch, collate_batch
from fader_lightning.data.folder import FolderDataModule
from fader_lightning.data.mvtec import MVTEC_CATEGORIES, MVTecADDataModule, make_mvtec_samples
from fader_lightning.data.samples import Sample, split_counts, validate_samples
from fader_lightning.data.visa import VISA_CATEGORIES, VisADataModule, make_visa_samples, read_visa_split

__all__ = [
    "MVTEC_CATEGORIES",
    "VAL_POLICIES",
    "VISA_CATEGORIES",
    "AnomalyDataModule",
    "AnomalyDataset",
    "Batch",
    "FolderDataModule",
    "MVTecADDataModule",
    "Sample",
    "VisADataModule",
    "collate_batch",
    "from_config",
    "make_mvtec_samples",
    "make_visa_samples",
    "read_visa_split",
    "split_counts",
    "validate_samples",
]
