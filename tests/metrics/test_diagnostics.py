"""Test-pass diagnostics against figures worked out by hand."""

import pytest
import torch

from fader_lightning.metrics.diagnostics import TestDiagnostics


def _batch() -> dict[str, torch.Tensor]:
    """Two 8x8 images on a 4 px patch grid (2x2 patches): one normal, one anomalous.

    M hides the left half of both. The anomalous image's defect fills patch (0, 1) (visible) and patch (1, 0)
    (masked); its map maximum lies on the visible defect. The normal image's maximum lies inside M.
    """
    masks = torch.zeros(2, 1, 8, 8)
    masks[..., :, :4] = 1
    gt = torch.zeros(2, 1, 8, 8)
    gt[1, 0, :4, 4:] = 1
    gt[1, 0, 4:, :4] = 1
    amap = torch.zeros(2, 1, 8, 8)
    amap[0, 0, 6, 1] = 1.0
    amap[1, 0, 1, 6] = 1.0
    pred = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]], [[[0.5, 0.9], [0.8, 0.0]]]])
    soft = torch.tensor([[[[1.0, 0.4], [1.0, 1.0]]], [[[1.0, 0.3], [0.2, 1.0]]]])
    return {"anomaly_map": amap, "masks": masks, "gt": gt, "labels": torch.tensor([0, 1]), "pred": pred, "soft": soft,
            "score_change": torch.tensor([0.1, 0.5])}  # fmt: skip


def test_figures_match_a_hand_computation() -> None:
    diag = TestDiagnostics(patch_size=4)
    diag.update(**_batch())
    out = diag.compute()
    assert out["defect_pixels_masked"] == pytest.approx(0.5)
    assert out["normal_max_in_mask"] == 1.0 and out["anomalous_max_on_defect"] == 1.0
    # patches: normal image 4 normal (2 masked); anomalous: (0,0) masked normal, (0,1) visible defect,
    # (1,0) masked defect, (1,1) visible normal
    assert out["patches_visible_defect"] == 1 and out["patches_masked_defect"] == 1
    assert out["patches_visible_normal"] == 3 and out["patches_masked_normal"] == 3
    # defect preds 0.9, 0.8 against normal preds 0.1, 0.2, 0.3, 0.4, 0.5, 0.0: perfectly ranked
    assert out["patch_auroc"] == pytest.approx(1.0)
    # visible: defect 0.9 against visible normals 0.2, 0.4, 0.0
    assert out["patch_auroc_visible"] == pytest.approx(1.0)
    assert out["attenuated_visible_defect"] == 1.0 and out["attenuated_masked_defect"] == 1.0
    assert out["attenuated_visible_normal"] == pytest.approx(1 / 3) and out["attenuated_masked_normal"] == 0.0
    assert out["score_change_normal"] == pytest.approx(0.1) and out["score_change_anomalous"] == pytest.approx(0.5)


def test_undefined_figures_are_none_and_reset_forgets() -> None:
    batch = _batch()
    diag = TestDiagnostics()  # stage 1: no patch figures
    diag.update(batch["anomaly_map"][:1], batch["masks"][:1], batch["gt"][:1], batch["labels"][:1])
    out = diag.compute()
    assert out["defect_pixels_masked"] is None and out["anomalous_max_on_defect"] is None
    assert out["normal_max_in_mask"] == 1.0 and "patch_auroc" not in out
    diag.reset()
    assert diag.compute()["normal_max_in_mask"] is None
