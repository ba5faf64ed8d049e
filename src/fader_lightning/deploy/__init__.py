"""What the deployment commands do.

Score images with a checkpoint (:mod:`.detector`: :class:`~fader_lightning.deploy.detector.Detector`, also the
Python API's), score image files (:mod:`.predict`) and export a checkpoint's whole inference graph (:mod:`.export`),
at the checkpoint's own input size.
"""
