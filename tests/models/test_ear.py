"""EARModel: single-mask and RIAD-style multi-pass reconstruction and scoring."""

import torch

from fader_lightning.masking import Obfuscation, build_mask_generator
from fader_lightning.masking.fill import obfuscate
from fader_lightning.models.ear.model import EARModel
from fader_lightning.models.scoring import AnomalyScorer, anomaly_map, image_score
from fader_lightning.models.unet import UNet


def _riad(seed: int = 0) -> EARModel:
    torch.manual_seed(seed)
    masker = build_mask_generator("random_multi", cell_sizes=[4, 8], n=2, seed=seed)
    return EARModel(UNet(widths=(4, 8)), masker, Obfuscation(fill="zero"), AnomalyScorer(kernel_size=3)).eval()


def test_riad_map_is_the_mean_of_the_per_cell_size_maps() -> None:
    ear = _riad()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = ear.masks(images)
    assert masks.shape == (2, 4, 32, 32)
    with torch.no_grad():
        recon, amap, score = ear.evaluate(images, masks)
        maps, recons = [], []
        for group in (masks[:, :2], masks[:, 2:]):  # cell size 4, then 8: each inpaints what its two masks hide
            parts = [m * ear.unet(obfuscate(images, m, fill="zero")) for m in group.split(1, dim=1)]
            recons.append(sum(parts))
            maps.append(anomaly_map(images, recons[-1], kernel_size=3))
    expected = torch.stack(maps).mean(0)
    torch.testing.assert_close(amap, expected)
    torch.testing.assert_close(score, image_score(expected, "max"))
    torch.testing.assert_close(recon, torch.stack(recons).mean(0))
    # the map of the averaged reconstruction is a different thing
    assert not torch.allclose(amap, anomaly_map(images, recon, kernel_size=3))


def test_single_mask_evaluate_is_the_scorer_of_the_reconstruction() -> None:
    torch.manual_seed(0)
    masker = build_mask_generator("checkerboard", cell_size=4)
    ear = EARModel(UNet(widths=(4, 8)), masker, Obfuscation(), AnomalyScorer()).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        recon, amap, score = ear.evaluate(images)
        want_recon = ear.reconstruct(images)
        want_map, want_score = ear.scorer(images, want_recon)
    torch.testing.assert_close(recon, want_recon)
    torch.testing.assert_close(amap, want_map)
    torch.testing.assert_close(score, want_score)
    assert torch.equal(ear.training_masks(images), ear.masks(images))  # deterministic: trains on its test masks
