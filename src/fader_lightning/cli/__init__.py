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
=====================  ==========================================  ====================

The jobs they run live below this package (:mod:`fader_lightning.jobs`, :mod:`fader_lightning.deploy`,
:mod:`fader_lightning.aggregate`). The Hydra apps share :func:`~fader_lightning.cli.job.run_job`;
:mod:`fader_lightning.cli.entry` answers ``--help`` without importing torch. The benchmarks are not commands of the
package: they live in the repository's ``benchmarks/`` folder.
"""
