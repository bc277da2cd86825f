"""Every metalcore callback, one module per ``conf/callbacks/<name>.yaml`` (``<name>.py``), which only log or write.

The LightningModule learns and scores (intervals and the temperature included); these callbacks
read its ``results`` and ``trust`` once a validation or test run has ended. The YAML files that name
a Lightning class directly (``model_checkpoint``, ``lr_monitor``) have no module here;
``sweep_progress.py`` is Hydra's callback, named in ``conf/hydra/default.yaml``.
"""
