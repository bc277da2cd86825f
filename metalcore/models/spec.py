"""``ModelSpec``: what a checkpoint says about the classifier it holds, so inference needs nothing else.

Training writes it (``metalcore.training.experiment.build``) into the checkpoint's
``hyper_parameters["spec"]`` as a plain dict, which ``torch.load(weights_only=True)`` reads back
without running any code; ``ModelSpec.from_dict`` validates it when a checkpoint is opened.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Class names (in logit order), the audio a clip must be, and the configs to rebuild the modules.

    ``features`` and ``model`` are ``_target_`` configs (Hydra's form, resolved) naming metalcore
    classes only: the front-end and the network (``num_classes`` included). ``environment`` is the
    software it was trained under (``metalcore.core.environment``); checkpoints older than that
    record have none.
    """

    classes: list[str]
    sample_rate: int
    channels: int
    segment_seconds: float
    features: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    # where the network's starting weights came from (package, version, sha256, licence); None: from scratch
    pretrained: dict[str, str] | None = None

    def __post_init__(self) -> None:
        classes = self.classes
        if not (isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)):
            raise ValueError(f"classes must be a list of class names, not {classes!r}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes {classes} name a class twice")
        if len(classes) < 2:
            raise ValueError(f"classes {classes!r} (a classifier has two or more distinct class names)")
        if self.channels not in (1, 2) or isinstance(self.channels, bool):
            raise ValueError(f"channels={self.channels!r} (1 or 2)")
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 768000:
            raise ValueError(f"sample_rate={rate!r} (an integer from 1000 to 768000 Hz, what audio uses)")
        seconds = self.segment_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 600:
            raise ValueError(f"segment_seconds={seconds!r} (more than 0, at most 600)")
        for name in ("features", "model"):
            config = getattr(self, name)
            if not isinstance(config, dict) or not isinstance(config.get("_target_"), str):
                raise ValueError(f"{name} must be a config with a _target_, not {config!r}")
            if not config["_target_"].startswith("metalcore."):  # opening a checkpoint must never run foreign code
                raise ValueError(f"{name} is {config['_target_']}, not a metalcore module")
        if not isinstance(self.environment, dict):
            raise ValueError(f"environment must be a mapping, not {self.environment!r}")
        if self.pretrained is not None and not (
            isinstance(self.pretrained, dict) and all(isinstance(v, str) for v in self.pretrained.values())
        ):
            raise ValueError(f"pretrained must map names to strings, not {self.pretrained!r}")
        if self.model.get("num_classes", len(classes)) != len(classes):
            raise ValueError(f"model.num_classes={self.model['num_classes']} but there are {len(classes)} classes")

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * self.sample_rate)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only: what the checkpoint stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> ModelSpec:
        """Validate a stored spec; ``ValueError`` says what is missing or wrong.

        Checkpoints written before the spec was typed nest sample rate, channels and segment
        length under ``data``; they read the same.
        """
        if not isinstance(raw, dict):
            raise ValueError(f"the spec is a {type(raw).__name__}, not a mapping")
        raw = {**raw, **raw["data"]} if isinstance(raw.get("data"), dict) else dict(raw)
        raw.pop("data", None)
        fields = set(cls.__dataclass_fields__)
        required = {
            name
            for name, f in cls.__dataclass_fields__.items()
            if f.default is MISSING and f.default_factory is MISSING
        }
        missing, unknown = sorted(required - set(raw)), sorted(set(raw) - fields)
        problems = [f"lacks {', '.join(missing)}"] * bool(missing) + [f"has unknown {', '.join(unknown)}"] * bool(
            unknown
        )
        if problems:
            raise ValueError(f"the spec {' and '.join(problems)}")
        return cls(**raw)
