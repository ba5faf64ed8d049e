"""Datasets and LightningDataModules: MVTec AD, MVTec AD 2, MVTec 3D-AD (RGB), VisA, Real-IAD, folders, generated."""

from fader_lightning.data.configured import from_config
from fader_lightning.data.datamodule import VAL_POLICIES, AnomalyDataModule
from fader_lightning.data.dataset import AnomalyDataset, Batch, collate_batch
from fader_lightning.data.folder import FolderDataModule
from fader_lightning.data.mvtec import MVTEC_CATEGORIES, MVTecADDataModule, make_mvtec_samples
from fader_lightning.data.mvtec3d import MVTEC3D_CATEGORIES, MVTec3DDataModule, make_mvtec3d_samples
from fader_lightning.data.mvtec_ad2 import MVTEC_AD2_CATEGORIES, MVTecAD2DataModule, make_mvtec_ad2_samples
from fader_lightning.data.realiad import REALIAD_CATEGORIES, RealIADDataModule, make_realiad_samples
from fader_lightning.data.samples import Sample, split_counts, validate_samples
from fader_lightning.data.visa import VISA_CATEGORIES, VisADataModule, make_visa_samples, read_visa_split

__all__ = [
    "MVTEC3D_CATEGORIES",
    "MVTEC_AD2_CATEGORIES",
    "MVTEC_CATEGORIES",
    "REALIAD_CATEGORIES",
    "VAL_POLICIES",
    "VISA_CATEGORIES",
    "AnomalyDataModule",
    "AnomalyDataset",
    "Batch",
    "FolderDataModule",
    "MVTec3DDataModule",
    "MVTecAD2DataModule",
    "MVTecADDataModule",
    "RealIADDataModule",
    "Sample",
    "VisADataModule",
    "collate_batch",
    "from_config",
    "make_mvtec3d_samples",
    "make_mvtec_ad2_samples",
    "make_mvtec_samples",
    "make_realiad_samples",
    "make_visa_samples",
    "read_visa_split",
    "split_counts",
    "validate_samples",
]
