"""``fader-export``: export the whole inference graph of a checkpoint as a self-contained deployment model.

Usage:
    fader-export ckpt_path=PATH output=FILE [format=onnx|onnx-int8|openvino] [masks=auto|input|embedded]
        [calibration_dir=DIR] [image_size=N|[H,W] [force=true]] [opset=17] [vit_weights=PATH]

A Hydra app: ``conf/export.yaml`` holds every key with its default (``--cfg job`` prints them) and ``-m`` sweeps.

The graph is masks -> obfuscation -> U-Net encoder -> (FADeR: patch-error prediction, soft mask, skip attenuation)
-> U-Net decoder -> anomaly map -> image score, for one fixed image size and a dynamic batch axis. Its input
``images`` ``(B, 3, H, W)`` is RGB in [0, 1], resized like training (the side-car names the interpolation).

Masks:

* ``masks=auto`` (default): computed inside the graph when the mask method allows it (saliency, checkerboard,
  none), so ``images`` is the only input and the runtime alone turns an image into its score; otherwise
  (attention runs a DINO ViT of its own, random_multi draws new random passes at every call) they are an input,
  as with ``masks=input``. The side-car says which: ``masking.in_graph``, and ``masking.reason`` when false.
* ``masks=input``: the graph also takes ``masks`` ``(B, P, H, W)`` (``1`` = hidden pixel, ``P`` passes, 1 except
  for random_multi), computed outside with the checkpoint's mask method and settings (see the side-car).
* ``masks=embedded``: masks inside the graph, or an error when the method cannot have them there.

Formats (``output`` names the model file; the side-car ``FILE.json`` is written next to it):

* ``format=onnx`` (default): ``FILE.onnx``, float32, checked with ``onnx.checker``.
* ``format=onnx-int8``: ``FILE.onnx`` whose U-Net convolutions are quantised to INT8 (static post-training
  quantisation with ONNX Runtime: QDQ, per-channel weights, per-tensor uint8 activations), calibrated on the
  normal images of ``calibration_dir=DIR`` (required; resized like training; at most 64, evenly spread over the
  sorted file names). The masks, the scoring and FADeR's patch-error predictor stay float32.
* ``format=openvino``: OpenVINO IR, ``FILE.xml`` (name it so) and its weights ``FILE.bin``, float32, converted
  from the ONNX graph (needs the ``openvino`` package). Compile it with the side-car's ``openvino.compile_config``
  (``INFERENCE_PRECISION_HINT=f32``): OpenVINO's CPU plugin otherwise computes in bfloat16 on CPUs that have it.

Outputs: ``anomaly_map`` ``(B, 1, H, W)``, ``score`` ``(B,)`` and, for FADeR, ``soft_mask``
``(B, 1, H / P, W / P)`` on the patch grid. The side-car describes format, inputs, outputs, mask method, fill,
scoring and the soft-mask calibration (tau, T). The graph's size is the one stored in the checkpoint;
``image_size=`` may only repeat it unless ``force=true`` (checkpoints that predate stored sizes fall back to the
run's ``metrics.json``). ``vit_weights`` is the DINO ViT state dict of a model with attention masking
(checkpoints do not store it). An output whose model, weights or side-car file is the checkpoint, ``vit_weights``
or ``calibration_dir`` is refused before any work. Nothing is written unless the whole export succeeds: the model
files and the side-car are written to a temporary folder beside them and swapped in together, so a re-export that
fails leaves the earlier model whole.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fader_lightning.cli.job import run_job
from fader_lightning.configs import CONFIG_DIR
from fader_lightning.deploy.export import export_checkpoint


def export_job(cfg: DictConfig) -> None:
    """Export the checkpoint and print the files written.

    Args:
        cfg: The composed ``conf/export.yaml`` config.
    """
    description = export_checkpoint(cfg)
    output = Path(cfg.output)
    written = ", ".join(str(output.with_name(name)) for name in description["files"])
    masks = "computed in the graph" if description["masking"]["in_graph"] else "an input"
    sys.stdout.write(f"wrote {written} and {output.with_suffix('.json')} (masks {masks})\n")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``fader-export`` (see :func:`~fader_lightning.cli.job.run_job`)."""
    run_job(export_job, cfg)


if __name__ == "__main__":
    main()
