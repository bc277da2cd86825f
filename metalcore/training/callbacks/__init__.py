"""Every callback of a run, one module per ``conf/callbacks/<name>.yaml`` (``<name>.py``), which only log or write.

The LightningModule learns and scores (intervals and the temperature included); these callbacks
read its ``results`` and ``trust`` once a validation or test run has ended. Two extend a Lightning
callback where metalcore needs more of it (``model_checkpoint``: its monitor checked as it is made;
``lr_monitor``: silent without a logger). A sweep's own callback, Hydra's, is
``metalcore.training.sweep_progress``.
"""
