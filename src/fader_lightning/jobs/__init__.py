"""The jobs the commands run, below the command layer: training and evaluation, and what they share.

* :mod:`~fader_lightning.jobs.train` and :mod:`~fader_lightning.jobs.evaluate`: the job functions of ``fader-train``
  and ``fader-eval`` (also :func:`fader_lightning.api.train`).
* :mod:`~fader_lightning.jobs.stages`: build, fit, test and record one stage; the test pass ``fader-eval`` shares.
* :mod:`~fader_lightning.jobs.run_dir`: the run-folder rules (one run per folder, a lock while it runs, Hydra's record).
* :mod:`~fader_lightning.jobs.adopt`, :mod:`~fader_lightning.jobs.resume`: what a stage-2 job and a resumed job take
  from their checkpoints; :mod:`~fader_lightning.jobs.stage1_store`: stage-1 models shared by a sweep's jobs;
  :mod:`~fader_lightning.jobs.settings_check`: the job's settings, checked before any work.
"""
