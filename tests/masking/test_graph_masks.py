"""Masks computed inside an exported graph (``MaskGenerator.graph_masks``) against the eager generators.

The eager saliency uses ``torch.fft``; its graph module uses matrix products, so the two agree to float32 rounding
(the saliency to ~1e-5 relative, asserted < 1e-4). A mask cell can only flip where two cells' scores tie at the
masking threshold to that precision: on every image set below all pixels agree, and the tests allow 0.1 % of
pixels to differ provided every differing cell is such a near-tie.
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from conftest import shared_path
from fader_lightning.data.dataset import AnomalyDataset
from fader_lightning.data.drawing import normal_image, paint_defect, seeded_rng
from fader_lightning.data.samples import NORMAL, Sample, list_images
from fader_lightning.data.transforms import build_transform
from fader_lightning.masking import (
    AttentionMask,
    CheckerboardMask,
    NoMask,
    RandomMultiMask,
    SpectralResidualSaliencyMask,
)
from fader_lightning.masking.base import ConstantMasks

MIN_PIXEL_AGREEMENT = 0.999
SALIENCY_RTOL = 1e-4
NEAR_TIE = 1e-4
"""A differing cell's eager score lies within this fraction of the largest cell score of the threshold score."""


def random_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def synthetic_images(count: int, size: int) -> torch.Tensor:
    """Generated textures and objects, every other one with a painted defect."""
    images = []
    for index in range(count):
        kind = ("texture", "object")[index % 2]
        image = normal_image(kind, size, seeded_rng(7, kind, index))
        if index % 4 >= 2:
            image, _ = paint_defect(image, ("spot", "scratch")[index % 3 % 2], seeded_rng(7, "defect", index))
        images.append(torch.from_numpy(image).permute(2, 0, 1).float())
    return torch.stack(images)


def real_images(category: str, size: int, per_folder: int = 3) -> torch.Tensor:
    """A few good and defective MVTec AD test images, resized like training."""
    folders = sorted(path for path in (shared_path("mvtec_ad", category, "test")).iterdir() if path.is_dir())
    paths = [path for folder in folders for path in list_images(folder)[:per_folder]]
    samples = [Sample(path, "test", NORMAL, "good", None, category) for path in paths]
    dataset = AnomalyDataset(samples, build_transform(size, "area"))
    return torch.stack([dataset[index]["image"] for index in range(len(dataset))])


def assert_graph_matches_eager(generator: SpectralResidualSaliencyMask, images: torch.Tensor) -> None:
    """Check saliency and masks of the graph module against eager."""
    graph = generator.graph_masks(tuple(images.shape[-2:]))
    with torch.no_grad():
        eager_saliency, graph_saliency = generator.saliency_map(images), graph.saliency_map(images)
        eager, graphed = generator(images), graph(images)
    scale = eager_saliency.amax(dim=(1, 2, 3), keepdim=True)
    assert ((graph_saliency - eager_saliency).abs() / scale).max() < SALIENCY_RTOL
    assert (eager == graphed).float().mean() >= MIN_PIXEL_AGREEMENT
    cell = generator.cell_size
    scores = F.avg_pool2d(eager_saliency, cell, cell, ceil_mode=True).flatten(1)
    threshold = scores.topk(max(generator.num_masked(scores.shape[1]), 1), dim=1).values[:, -1:]
    flipped = (eager[..., ::cell, ::cell] != graphed[..., ::cell, ::cell]).flatten(1)
    near = (scores - threshold).abs() <= NEAR_TIE * scores.amax(dim=1, keepdim=True)
    assert not (flipped & ~near).any(), "a mask cell differs that is not a near-tie"


@pytest.mark.parametrize(("height", "width"), [(64, 64), (256, 256), (50, 37)])
def test_saliency_graph_masks_equal_eager_on_random_images(height: int, width: int) -> None:
    assert_graph_matches_eager(SpectralResidualSaliencyMask(), random_images(8, height, width))


@pytest.mark.parametrize("size", [64, 256])
def test_saliency_graph_masks_equal_eager_on_generated_textures_and_objects(size: int) -> None:
    assert_graph_matches_eager(SpectralResidualSaliencyMask(), synthetic_images(8, size))


@pytest.mark.real_data
@pytest.mark.parametrize("category", ["bottle", "grid"])
def test_saliency_graph_masks_equal_eager_on_real_images(category: str) -> None:
    assert_graph_matches_eager(SpectralResidualSaliencyMask(), real_images(category, 256))


@pytest.mark.parametrize(
    "settings",
    [{"fraction": 0.0}, {"fraction": 1.0}, {"blur_sigma": 0.0}, {"cell_size": 1, "work_size": 32},
     {"cell_size": 16, "work_size": 100, "blur_sigma": 40.0}],
)  # fmt: skip
def test_saliency_graph_masks_follow_every_setting(settings: dict) -> None:
    assert_graph_matches_eager(SpectralResidualSaliencyMask(**settings), random_images(4, 50, 37, seed=1))


def test_saliency_graph_masks_run_in_onnxruntime_for_any_batch() -> None:
    generator = SpectralResidualSaliencyMask()
    graph = generator.graph_masks((64, 64))
    buffer = io.BytesIO()
    batch_axis = {"images": {0: "batch"}, "masks": {0: "batch"}}
    torch.onnx.export(graph, (random_images(1, 64, 64),), buffer, input_names=["images"], output_names=["masks"],
                      dynamic_axes=batch_axis, opset_version=17, dynamo=False)  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    images = torch.cat([random_images(3, 64, 64, seed=2), synthetic_images(4, 64)])
    (masks,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = generator(images).numpy()
    assert masks.shape == expected.shape and np.mean(masks == expected) >= MIN_PIXEL_AGREEMENT


@pytest.mark.parametrize("generator", [CheckerboardMask(cell_size=16, phase=1), NoMask()], ids=["checkerboard", "none"])
def test_image_independent_methods_have_constant_graph_masks(generator) -> None:
    graph = generator.graph_masks((50, 37))
    images = random_images(3, 50, 37)
    assert isinstance(graph, ConstantMasks)
    assert torch.equal(graph(images), generator(images))


def test_methods_that_cannot_run_in_a_graph_say_why() -> None:
    random_multi = RandomMultiMask()
    attention = AttentionMask(model_name="vit_tiny_patch16_224", image_size=64, pretrained=False)
    assert random_multi.graph_masks((64, 64)) is None and "random" in random_multi.graph_masks_unavailable
    assert attention.graph_masks((64, 64)) is None and "DINO ViT" in attention.graph_masks_unavailable
