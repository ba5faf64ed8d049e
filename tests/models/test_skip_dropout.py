"""Patch-wise skip dropout of stage 1."""

import pytest
import torch

from conftest import EAR_SETTINGS
from fader_lightning.errors import ConfigError
from fader_lightning.models import EARModule
from fader_lightning.models.skip_dropout import PatchSkipDropout
from fader_lightning.models.unet import UNet


def test_drops_whole_patches_on_the_chosen_levels() -> None:
    net = UNet(widths=(8, 16, 32, 64))
    x = torch.rand(4, 3, 64, 64)
    skips, _ = net.encode(x)
    skips = [s.abs() + 1 for s in skips]  # no zero before dropout
    torch.manual_seed(0)
    out = PatchSkipDropout(p=0.3, levels=(0, 2), patch_size=8)(skips, x)
    assert out[1] is skips[1]
    dropped0 = (out[0] == 0).all(dim=1, keepdim=True)  # (B, 1, 64, 64)
    dropped2 = (out[2] == 0).all(dim=1, keepdim=True)  # (B, 1, 16, 16)
    grid0, grid2 = dropped0[..., ::8, ::8], dropped2[..., ::2, ::2]
    assert torch.equal(grid0, grid2)  # the same patches on every level
    assert torch.equal(dropped0, grid0.repeat_interleave(8, -1).repeat_interleave(8, -2))  # whole patches
    assert 0.15 < grid0.float().mean() < 0.45


def test_no_dropout_and_bad_settings() -> None:
    with pytest.raises(ConfigError, match=r"^p=1\.0 is invalid"):
        PatchSkipDropout(p=1.0)
    with pytest.raises(ConfigError, match=r"^patch_size=0 is invalid"):
        PatchSkipDropout(p=0.1, patch_size=0)
    masking = {"name": "checkerboard"}
    assert (
        EARModule(
            **EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking=masking, skip_dropout={"p": 0.0}
        ).skip_dropout
        is None
    )
    net = UNet(widths=(8, 16, 32, 64))
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"^levels=\[0, 3\].*\[0, 1, 2\]"):
        PatchSkipDropout(p=0.1, levels=(0, 3)).check_levels(len(net.encode(x)[0]))
    # built from the config, the error names the config key, before any training step
    with pytest.raises(ConfigError, match=r"^model\.skip_dropout\.levels=\[0, 3\].*\[0, 1, 2\]"):
        EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "none"},
                  skip_dropout={"p": 0.1, "levels": [0, 3], "patch_size": 8})  # fmt: skip
    with pytest.raises(ConfigError, match=r"^model\.skip_dropout\.p=1\.5 is invalid"):
        EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "none"},
                  skip_dropout={"p": 1.5, "levels": [0], "patch_size": 8})  # fmt: skip


def test_stage1_uses_dropout_in_training_steps_only() -> None:
    torch.manual_seed(1)
    module = EARModule(
        **EAR_SETTINGS,
        unet={"widths": [8, 16, 32, 64]},
        masking={"name": "none"},
        skip_dropout={"p": 0.5, "levels": [0, 1, 2]},
    )
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = module.ear.reconstruct(images)
        dropped = module.ear.reconstruct(images, skip_transform=module.skip_dropout)
        assert not torch.allclose(plain, dropped)
        assert torch.equal(module.infer(images)["recon"], plain)  # inference never drops
