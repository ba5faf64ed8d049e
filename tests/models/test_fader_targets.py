"""FADeR's training targets: synthetic defects and the complementary-mask target."""

import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import Obfuscation, build_mask_generator
from fader_lightning.models.ear.model import EARModel
from fader_lightning.models.fader.model import gt_patch_targets
from fader_lightning.models.fader.targets import (
    TARGETS,
    check_synthetic,
    complement_targets,
    synthetic_defects,
    synthetic_targets,
)
from fader_lightning.models.scoring import AnomalyScorer, raw_anomaly_map
from fader_lightning.models.unet import UNet


@pytest.fixture
def ear() -> EARModel:
    torch.manual_seed(0)
    return EARModel(
        UNet(widths=(8, 16, 32, 64)).eval(), build_mask_generator("checkerboard", cell_size=8), Obfuscation(),
        AnomalyScorer(),
    )  # fmt: skip


def test_synthetic_defects_are_seeded_and_inside_the_image() -> None:
    images = torch.rand(6, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    a, mask_a = synthetic_defects(images, torch.Generator().manual_seed(3))
    b, mask_b = synthetic_defects(images, torch.Generator().manual_seed(3))
    c, _ = synthetic_defects(images, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(a, c)
    assert a.shape == images.shape and mask_a.shape == (6, 1, 40, 56)
    assert a.min() >= 0 and a.max() <= 1
    assert set(mask_a.unique().tolist()) <= {0.0, 1.0}
    assert bool((mask_a.flatten(1).sum(1) > 0).all())  # every image got a defect
    assert torch.equal(a * (1 - mask_a), images * (1 - mask_a))  # nothing changes outside it
    assert bool(((a - images).abs().sum(1, keepdim=True) > 0)[mask_a > 0].float().mean() > 0.5)


@pytest.mark.parametrize("kind", ["cutpaste", "blob"])
def test_each_defect_kind_alone(kind: str) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _, masks = synthetic_defects(images, torch.Generator().manual_seed(0), kinds=[kind], max_side=0.5)
    side = masks.flatten(1).sum(1)
    assert bool((side > 0).all()) and bool((side <= 16 * 16).all())
    if kind == "cutpaste":  # rectangles
        rows, cols = masks[0, 0].sum(1), masks[0, 0].sum(0)
        assert rows.max() * cols.max() == masks[0, 0].sum()


def test_bad_synthetic_settings() -> None:
    with pytest.raises(ConfigError, match=r"^kinds=\['scratch'\] is invalid"):
        check_synthetic(["scratch"], 0.1, 0.2)
    with pytest.raises(ConfigError, match=r"^min_side=0\.5, max_side=0\.2 are invalid"):
        check_synthetic(["blob"], 0.5, 0.2)
    check_synthetic(["blob", "cutpaste"], 0.08, 0.25)


def test_synthetic_target_is_the_added_error(ear: EARModel) -> None:
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    masks = ear.masks(clean)
    _, _, none = synthetic_targets(ear, clean, clean, masks, 8, tie_below=0.0)
    assert torch.equal(none, torch.zeros_like(none))
    corrupted = clean.clone()
    corrupted[:, :, 8:16, 16:24] = 1.0 - corrupted[:, :, 8:16, 16:24]  # patch (1, 2), visible under this mask
    assert masks[:, :, 8:16, 16:24].sum() == 0
    skips, obfuscated, targets = synthetic_targets(ear, clean, corrupted, masks, 8, tie_below=0.01)
    assert len(skips) == 3 and torch.equal(obfuscated, ear.obfuscation(corrupted, masks))
    with torch.no_grad():  # independently: error against the clean image, corrupted minus clean input
        added = gt_patch_targets(clean, ear.reconstruct(corrupted, masks), 8) - gt_patch_targets(
            clean, ear.reconstruct(clean, masks), 8
        )
    torch.testing.assert_close(targets, (added - 0.01).clamp(min=0))
    assert targets.shape == (2, 1, 8, 8) and float(added.abs().max()) > 0


def test_complement_target_is_the_inpainted_error(ear: EARModel) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    masks = ear.masks(images)
    with torch.no_grad():
        recon = ear.reconstruct(images, masks)
        targets = complement_targets(ear, images, masks, recon, 8)
        other = ear.reconstruct(images, 1 - masks)
    # checkerboard cells of 8 px: every 8 px patch is either hidden by M or by 1 - M
    hidden = masks[:, :, ::8, ::8] > 0
    from_first = gt_patch_targets(images, recon, 8)
    from_second = gt_patch_targets(images, other, 8)
    torch.testing.assert_close(targets, torch.where(hidden, from_first, from_second))
    assert targets.shape == (2, 1, 4, 4)
    assert raw_anomaly_map(images, recon).shape == (2, 1, 32, 32)


def test_every_target_of_the_table_gives_its_patch_targets(ear: EARModel) -> None:
    """The dispatch table: each name's function, on clean images, against the functions it names."""
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    masks = ear.masks(images)
    with torch.no_grad():
        recon = ear.reconstruct(images, masks)
        errors = gt_patch_targets(images, recon, 8)
        got = {name: make(ear, images, masks, recon, 8, errors) for name, make in TARGETS.items()}
        complement = complement_targets(ear, images, masks, recon, 8)
    assert set(got) == {"msgms", "mse", "complement", "synthetic"}
    assert torch.equal(got["msgms"], errors) and torch.equal(got["complement"], complement)
    torch.testing.assert_close(got["mse"], gt_patch_targets(images, recon, 8, "mse"))
    assert not torch.equal(got["mse"], errors) and float(got["synthetic"].abs().max()) == 0.0
    assert all(value.shape == (2, 1, 4, 4) for value in got.values())


def test_installed_targets_join_the_table_and_clashes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import fader_lightning.utils.plugins as plugins
    from fader_lightning.errors import ConfigError
    from fader_lightning.models.fader.targets import fader_targets

    def installed(**targets: str) -> None:
        points = [EntryPoint(name, value, plugins.TARGETS_GROUP) for name, value in targets.items()]
        monkeypatch.setattr(plugins, "entry_points", lambda group: [p for p in points if p.group == group])
        fader_targets.cache_clear()

    try:
        installed(doubled="operator:mul")
        assert list(fader_targets()) == [*TARGETS, "doubled"]
        installed(mse="operator:mul")
        with pytest.raises(ConfigError, match=r"declares the FADeR target 'mse' .* a name that is taken"):
            fader_targets()
        installed(constant="math:pi")
        with pytest.raises(ConfigError, match=r"the FADeR target 'constant' .* is 3\.14.*, not a function"):
            fader_targets()
    finally:
        fader_targets.cache_clear()


def test_an_unknown_patch_error_measure_is_refused() -> None:
    from fader_lightning.errors import ConfigError

    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"^measure='mae' is unknown; use one of msgms, mse"):
        gt_patch_targets(images, images, 8, "mae")
    assert torch.equal(gt_patch_targets(images, images, 8, "mse"), torch.zeros(1, 1, 4, 4))
