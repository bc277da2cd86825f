"""Obtain one exact, verified wheel from the package index pip is configured with.

Pretrained weights that ship inside a PyPI wheel (musicnn's TensorFlow checkpoints) are fetched
with ``pip download --no-deps``: it honours the user's index, proxy and certificates, and needs no
install of the package itself (musicnn pins ``numpy<1.17`` and TensorFlow, which metalcore cannot
depend on). The wheel's SHA-256 is checked against a constant before anything is read from it.
Without network access the user places the wheel by hand (the error says how), or points
``METALCORE_PRETRAINED_WHEELS`` at a folder that holds it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from metalcore.core.errors import UserError
from metalcore.core.files import make_folder

WHEELS_ENV = "METALCORE_PRETRAINED_WHEELS"  # a folder searched before the index (offline machines)


@dataclass(frozen=True)
class Wheel:
    """One released wheel, named and hashed exactly, and where its contents may be used."""

    package: str
    version: str
    filename: str
    sha256: str
    licence: str
    url: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def record(self) -> dict[str, str]:
        """What a checkpoint made from this wheel says about its source."""
        return asdict(self)


def pretrained_folder(cache_dir: str | Path) -> Path:
    """Where wheels and converted weights live: ``<cache_dir>/pretrained``."""
    return Path(cache_dir).expanduser().absolute() / "pretrained"


def fetch_wheel(wheel: Wheel, cache_dir: str | Path) -> Path:
    """The verified wheel: from ``$METALCORE_PRETRAINED_WHEELS`` if it holds it, else from
    ``<cache_dir>/pretrained/``, downloaded there on first use (UserError if it cannot be)."""
    placed = os.environ.get(WHEELS_ENV)
    if placed and (Path(placed) / wheel.filename).is_file():
        return verified(wheel, Path(placed) / wheel.filename)
    folder = make_folder(pretrained_folder(cache_dir), "paths.cache_dir=")
    target = folder / wheel.filename
    with FileLock(str(folder / f".{wheel.filename}.lock")):  # sweep jobs starting together download once
        if not target.is_file():
            _download(wheel, folder)
    return verified(wheel, target)


def verified(wheel: Wheel, path: Path) -> Path:
    """``path`` if its SHA-256 is the wheel's, else UserError naming the file (a damaged or different build)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != wheel.sha256:
        raise UserError(
            f"{path}: SHA-256 {digest.hexdigest()[:16]}... is not that of {wheel.filename} "
            f"({wheel.sha256[:16]}...); delete it and fetch again"
        )
    return path


def _download(wheel: Wheel, folder: Path) -> None:
    """``pip download --no-deps <package>==<version>`` into a temporary folder, then into ``folder``."""
    by_hand = (
        f"on a machine with network access run `pip download --no-deps {wheel.requirement} -d {folder}` "
        f"and copy {wheel.filename} there (or set {WHEELS_ENV} to a folder that holds it)"
    )
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "--no-input", wheel.requirement, "-d", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise UserError(f"cannot download {wheel.requirement} with pip ({err}); {by_hand}") from None
        got = Path(tmp) / wheel.filename
        if done.returncode != 0 or not got.is_file():
            lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
            raise UserError(f"cannot download {wheel.requirement} from the package index ({reason}); {by_hand}")
        verified(wheel, got)
        os.replace(got, folder / wheel.filename)
