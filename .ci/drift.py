"""Tell drift of the package index from a broken project: the README's install against the lock.

    python3 .ci/drift.py FRESH_PYTHON LOCKED_PYTHON requirements.lock

FRESH_PYTHON is an environment installed as the README says (a fresh resolve today), LOCKED_PYTHON
one installed from requirements.lock. ``python -m metalcore.doctor`` runs in each. When the fresh
one fails while the locked one works, something moved on the index since the lock: this prints one
line naming what moved and what to do, and exits 1. Standard library only: it must run when the
environment it examines is broken.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

INSTALLED = (
    "import importlib.metadata as m, json; seen = {}\n"
    "for d in m.distributions(): seen.setdefault(d.metadata['Name'].lower().replace('_', '-'), d.version)\n"
    "print(json.dumps(seen))"
)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def doctor(python: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "metalcore.doctor"], capture_output=True, text=True)


def installed(python: str) -> dict[str, str]:
    """Each distribution's version as that interpreter imports it (the first on its path wins)."""
    done = subprocess.run([python, "-c", INSTALLED], capture_output=True, text=True, check=True)
    return {normal(k): v for k, v in json.loads(done.stdout).items()}


def locked(lock: Path) -> dict[str, str]:
    pins = (line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {normal(name): version.split(";")[0].strip() for name, version in pins}


def moved(fresh: dict[str, str], lock: dict[str, str], failures: str) -> list[str]:
    """``name lock -> fresh`` for what differs, those the failing checks name first."""
    changed = sorted(name for name in lock.keys() & fresh.keys() if lock[name] != fresh[name])
    named = [name for name in changed if re.search(rf"\b{re.escape(name)}\b", failures)]
    return [f"{name} {lock[name]} -> {fresh[name]}" for name in (named or changed)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    fresh_python, locked_python, lock = argv[0], argv[1], Path(argv[2])
    fresh = doctor(fresh_python)
    if fresh.returncode == 0:
        print("drift check: the README's install passes doctor")
        return 0
    failures = "\n".join(line for line in fresh.stdout.splitlines() if line.startswith("FAIL"))
    if doctor(locked_python).returncode != 0:
        print(fresh.stdout + fresh.stderr)
        print(
            "drift check: doctor fails with the locked packages too: the project or this machine is broken, see above"
        )
        return 1
    changes = moved(installed(fresh_python), locked(lock), failures) or ["nothing pinned in the lock"]
    print(
        f"drift check: the README's install is broken today while {lock.name} works; moved since the lock: "
        f"{', '.join(changes[:6])}{' ...' * (len(changes) > 6)}; pin the working version in pyproject.toml, "
        f"or choose a new working set and refresh the lock with .ci/lock"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
