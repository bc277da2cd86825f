"""The two contracts a newcomer extends against: the network (models/base.py) and the checkpoint's
spec (models/spec.py). A new network needs nothing but the contract; a network or a spec that
breaks it is refused with the reason, where it is built and where a checkpoint is read."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from metalcore.models.base import Network, check_network
from metalcore.models.crnn import CRNN
from metalcore.models.frontend import MelFrontend
from metalcore.models.spec import ModelSpec
from metalcore.models.stats import MelStats
from metalcore.training.module import GenreClassifier


class BandMeans(Network):
    """The smallest network there is: a linear layer on each band's mean; what a newcomer writes first."""

    def __init__(self, num_classes: int, in_channels: int = 2, n_mels: int = 64) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        self.head = nn.Linear(in_channels * n_mels, num_classes)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, n_mels, frames)`` -> ``(batch, num_classes)``."""
        return self.head(spec.mean(-1).flatten(1))


class OneLogit(BandMeans):
    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return super().forward(spec)[:, :1]


def test_a_network_that_keeps_the_contract_trains_in_the_module():
    net = BandMeans(3, 2, 32)
    check_network(net, 3, 2, 32, 21)
    module = GenreClassifier(
        MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256), net, ["a", "b", "c"], optimizer=torch.optim.Adam
    )
    module.configure_model()  # compile_cnn off; and nothing to compile in this network anyway
    audio, labels = torch.randn(4, 2, 5120), torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(module(audio), labels)
    loss.backward()
    assert torch.isfinite(loss) and net.head.weight.grad is not None


class SlowTrunk(BandMeans):
    """A pretrained trunk under a new head: the trunk learns at a tenth of the head's rate, a frozen part not at all."""

    def __init__(self, num_classes: int, in_channels: int = 2, n_mels: int = 64) -> None:
        super().__init__(num_classes, in_channels, n_mels)
        self.trunk, self.frozen_part = nn.Linear(n_mels, n_mels), nn.Linear(n_mels, n_mels)
        self.frozen_part.requires_grad_(False)

    def parameter_groups(self):
        return [{"params": list(self.head.parameters())}, {"params": list(self.trunk.parameters()), "lr_scale": 0.1}]


def test_the_optimiser_takes_the_network_s_groups_at_their_share_of_the_learning_rate():
    frontend = MelFrontend(16000, n_mels=32, n_fft=512, hop_length=256)
    optimizer = partial(torch.optim.AdamW, lr=1e-3)
    scheduler = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4)
    module = GenreClassifier(frontend, SlowTrunk(3, 2, 32), ["a", "b", "c"], optimizer=optimizer, scheduler=scheduler)
    made = module.configure_optimizers()
    head, trunk = made["optimizer"].param_groups
    assert head["lr"] == pytest.approx(1e-3) and trunk["lr"] == pytest.approx(1e-4)
    assert made["lr_scheduler"]["scheduler"].base_lrs == pytest.approx([1e-3, 1e-4])
    optimised = {id(p) for g in (head, trunk) for p in g["params"]}
    assert not any(id(p) in optimised for p in module.net.frozen_part.parameters())
    # a network without groups of its own trains every parameter at the configured rate, in one group
    plain = GenreClassifier(frontend, BandMeans(3, 2, 32), ["a", "b", "c"], optimizer)
    (group,) = plain.configure_optimizers().param_groups
    assert group["lr"] == pytest.approx(1e-3) and len(group["params"]) == 2


BROKEN = {
    "not a Network": (
        lambda: nn.Flatten(),
        r"torch\.nn\.modules\.flatten\.Flatten is not a metalcore\.models\.base\.Network",
    ),
    "built for other data": (
        lambda: BandMeans(3, 1, 32),
        r"built for \(num_classes, in_channels, n_mels\) = \(3, 1, 32\), but the data and front-end give \(3, 2, 32\)",
    ),
    "wrong output": (lambda: OneLogit(3, 2, 32), r"returns \(2, 1\) for a batch of 2, not logits of shape \(2, 3\)"),
    "too few frames": (lambda: CRNN(3, 2, 32, channels=(8, 8, 8)), r"cannot take a spectrogram of 4 frames: "),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_network_that_breaks_the_contract_is_refused_with_the_reason(name):
    make, message = BROKEN[name]
    net = make().train()
    with pytest.raises(ValueError, match=message):
        check_network(net, 3, 2, 32, 4 if name == "too few frames" else 21)
    assert net.training, "the check puts the network back in the mode it found it in"


def test_compile_names_what_the_network_offers():
    """``compile_cnn`` compiles what ``compilable()`` returns and nothing when that is None."""
    assert isinstance(CRNN(2, gru_hidden=8).compilable(), nn.Sequential)
    net = MelStats(2)
    module = GenreClassifier(
        MelFrontend(16000, n_fft=512), net, ["a", "b"], optimizer=torch.optim.Adam, compile_cnn=True
    )
    module.configure_model()
    assert all(m._compiled_call_impl is None for m in module.modules())


# -- the checkpoint's spec ------------------------------------------------------------------------

SPEC = {
    "classes": ["hardcore", "metal"],
    "sample_rate": 16000,
    "channels": 2,
    "segment_seconds": 2.0,
    "features": {"_target_": "metalcore.models.frontend.MelFrontend", "sample_rate": 16000, "n_mels": 32},
    "model": {"_target_": "metalcore.models.stats.MelStats", "in_channels": 2, "n_mels": 32, "num_classes": 2},
}


def test_spec_round_trips_as_plain_containers_and_reads_the_old_layout():
    spec = ModelSpec.from_dict(SPEC)  # no environment: checkpoints written before it was recorded
    assert spec.to_dict() == {**SPEC, "environment": {}, "pretrained": None} and spec.segment_samples == 32000
    recorded = {**SPEC, "environment": {"torch": "2.11.0", "torchaudio": "2.11.0"}, "pretrained": None}
    assert ModelSpec.from_dict(recorded).to_dict() == recorded
    source = {"package": "musicnn", "version": "0.1.0", "sha256": "ab" * 32, "licence": "ISC"}
    assert ModelSpec.from_dict({**SPEC, "pretrained": source}).pretrained == source  # where the weights came from
    old = {key: SPEC[key] for key in ("classes", "features", "model")}
    old["data"] = {key: SPEC[key] for key in ("sample_rate", "channels", "segment_seconds")}
    assert ModelSpec.from_dict(old) == spec  # checkpoints written before the spec was typed


BAD_SPECS = {
    "sample_rate": ("16k", r"sample_rate='16k' \(an integer from 1000 to 768000 Hz"),
    "channels": (0, r"channels=0 \(1 or 2\)"),
    "segment_seconds": (-1.0, r"segment_seconds=-1.0 \(more than 0, at most 600\)"),
    "classes": (["metal", "metal"], r"classes \['metal', 'metal'\] name a class twice"),
    "model": ({"_target_": "os.system", "command": "echo hacked"}, "model is os.system, not a metalcore module"),
    "features": ({"n_mels": 32}, "features must be a config with a _target_"),
}


@pytest.mark.parametrize("key", BAD_SPECS)
def test_a_bad_spec_is_refused_with_the_key_and_the_reason(key):
    value, message = BAD_SPECS[key]
    with pytest.raises(ValueError, match=message):
        ModelSpec.from_dict({**SPEC, key: value})


def test_a_spec_with_missing_or_unknown_fields_is_refused():
    raw = {k: v for k, v in SPEC.items() if k != "channels"} | {"colour": "red"}
    with pytest.raises(ValueError, match="the spec lacks channels and has unknown colour"):
        ModelSpec.from_dict(raw)
    with pytest.raises(ValueError, match=r"model\.num_classes=3 but there are 2 classes"):
        ModelSpec.from_dict({**SPEC, "model": {**SPEC["model"], "num_classes": 3}})
