"""``fader-predict``: score images with a trained checkpoint; write heat maps, overlays and ``scores.csv``.

Usage:
    fader-predict ckpt_path=PATH input=IMAGE|FOLDER|GLOB output=DIR [threshold=FLOAT|auto] [normal_dir=DIR]
        [calibration.method=max|quantile|gaussian] [calibration.target_fpr=0.05] [output_size=input|model]
        [map_encoding=heat|gray8|gray16] [image_size=N|[H,W] [force=true]] [batch_size=8] [device=auto|cpu|cuda]
        [vit_weights=PATH]
    fader-predict -m ckpt_path=A.ckpt,B.ckpt input=DIR 'output=out/${hydra:job.num}'

A Hydra app: ``conf/predict.yaml`` holds every key with its default (``--cfg job`` prints them) and ``-m`` sweeps.

Stage 1 (EAR) and stage 2 (FADeR) checkpoints are told apart automatically. ``input`` is one image, a folder (its
png/jpg/bmp/tif files, sub-folders included) or a quoted glob (``'input=data/**/*.png'``). Images are resized as in
training, to the image size and with the interpolation stored in the checkpoint; ``image_size=`` may only repeat
that size unless ``force=true`` (checkpoints that predate stored sizes fall back to the training run's
``metrics.json``; else ``image_size=`` is required). Written under ``output``, mirroring the input's sub-folders
(relative to the input folder, or to the deepest folder every match of a glob shares):

* ``maps/<sub-folders>/<stem>.png``: the anomaly map at the input image's own size (``output_size=model``: at the
  model's), enlarged bilinearly from the model's map. ``map_encoding=heat``: JET colours on a fixed scale: blue is the
  lowest map value of the normal calibration images, green the pixel threshold, red as far above it as the normal
  values spread below it (checkpoints without stored calibration: 0 (blue) to the image threshold (red));
  ``gray8``/``gray16``: the calibrated map (``calibrated_score``'s formula, 0.5 at the pixel threshold) as 8- or
  16-bit grayscale, for programs;
* ``masks/<sub-folders>/<stem>.png``: the binary mask at the same size, 255 where the map is above the pixel
  threshold;
* ``overlays/<sub-folders>/<stem>.png``, at model size, each panel titled: image | I' (what the inpainting network
  sees) | reconstruction | the heat map blended over the image | the region above the pixel threshold (red, over a
  white halo) | the map's colour bar [| FADeR's soft mask in its own colours (viridis: dark is attenuated) | its
  bar], over a caption with the score, the threshold and the decision;
* ``scores.csv``: ``path,status,score,calibrated_score,label,map,mask,overlay,height,width,reason``, one row per
  input file: ``status`` ok with ``label`` 1 (anomalous) when ``score > threshold``, else 0, ``calibrated_score``
  the score on (0, 1) with the threshold at 0.5 (empty for checkpoints without calibration lows), ``map``, ``mask``
  and ``overlay`` the written files relative to ``output`` and ``height``/``width`` the size of the map and mask; or
  ``status`` skipped with the ``reason`` (an unreadable file, or an image with a side below the smallest the model
  scores).

They are written to a temporary folder inside ``output`` and swapped in whole when every image is done: they replace
an earlier prediction's (a prediction that fails leaves it as it was), and never a ``maps/``, ``masks/``,
``overlays/`` or ``scores.csv`` that fader-predict did not write. An ``output`` folder that is, holds or lies inside
an input (``input``: the folder, the file or each file a glob matches; ``normal_dir``, ``ckpt_path``, ``vit_weights``),
or whose files a glob ``input`` would match on a re-run, is refused before any work.

Stems used twice in a folder get ``_1``, ``_2``, ... appended. The image threshold comes from, in this order:
``threshold=FLOAT``; ``threshold=auto`` (or just ``normal_dir=DIR``): calibrated on the scores of the normal images
in ``normal_dir`` by the checkpoint's calibration method and target false-positive rate, or by ``calibration.*``
(``max``, ``quantile`` or ``gaussian``; see ``docs/CALIBRATION.md``); the threshold the checkpoint carries
(calibrated on the normal images held out of training when training ended); else, for checkpoints that predate it,
the ORACLE threshold of the training run's ``metrics.json`` (picked on the test labels, with a warning). The pixel
threshold is the checkpoint's (else the image threshold). Exit code 0 when at least one image was scored, else 1 (as
for a bad option, checkpoint or input). ``vit_weights`` is the DINO ViT state dict of a model with attention
masking: checkpoints do not store it, and loading one never downloads it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fader_lightning.cli.job import run_job
from fader_lightning.configs import CONFIG_DIR
from fader_lightning.deploy.predict import predict
from fader_lightning.errors import DataError


def predict_job(cfg: DictConfig) -> None:
    """Score the images, print a summary and fail when none could be scored.

    Args:
        cfg: The composed ``conf/predict.yaml`` config.

    Raises:
        DataError: When no input image could be scored (``scores.csv`` lists why).
    """
    result = predict(cfg)
    anomalous = sum(row["label"] for row in result.scored)
    lines = [
        f"scored {len(result.scored)} image(s): {anomalous} anomalous at threshold {result.threshold:.6g} "
        f"({result.threshold_source}); results in {cfg.output}"
    ]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} file(s) that could not be scored (listed in scores.csv):")
        lines += [f"  {row['path']}: {row['reason']}" for row in result.skipped]
    sys.stdout.write("\n".join(lines) + "\n")
    if not result.scored:
        raise DataError(f"no image of input={cfg.input} could be scored; {cfg.output}/scores.csv gives the reasons")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``fader-predict`` (see :func:`~fader_lightning.cli.job.run_job`)."""
    run_job(predict_job, cfg)


if __name__ == "__main__":
    main()
