"""Lightning callbacks for everything a run writes besides checkpoints: figures and the run record.

Each is chosen in ``conf/callbacks/`` (one YAML per callback), so the LightningModule only learns
and scores; callbacks read its ``results`` once a validation or test run has ended.
"""
