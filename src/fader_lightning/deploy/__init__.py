"""What the deployment commands do.

Score image files (:mod:`.predict`) and export a checkpoint's whole inference graph (:mod:`.export`), at the
checkpoint's own input size (:mod:`.sizing`).
"""
