"""The commands: one module per console script, each a thin layer over the library.

=====================  ==========================================  ====================
command                module                                      config
=====================  ==========================================  ====================
``fader-train``        :mod:`fader_lightning.cli.train`            ``conf/train.yaml``
``fader-eval``         :mod:`fader_lightning.cli.evaluate`         ``conf/eval.yaml``
``fader-predict``      :mod:`fader_lightning.cli.predict`          ``conf/predict.yaml``
``fader-export``       :mod:`fader_lightning.cli.export`           ``conf/export.yaml``
``fader-aggregate``    :mod:`fader_lightning.cli.aggregate`        arguments
``fader-check-data``   :mod:`fader_lightning.cli.check_data`       arguments
``make bench``         :mod:`fader_lightning.cli.bench`            arguments
``make bench-peers``   :mod:`fader_lightning.cli.bench_peers`      arguments
``make bench-speed``   :mod:`fader_lightning.cli.bench_speed`      arguments
=====================  ==========================================  ====================

The Hydra apps share :func:`~fader_lightning.cli.job.run_job`; :mod:`fader_lightning.cli.entry` answers ``--help``
without importing torch.
"""
