"""Several processes on one benchmark or sweep folder: run claims and locked merges of ``results.json``.

Start the same ``reid-aug sweep`` (or ``benchmark``) command in two shells, or on two machines that share the
folder, and each run (variant, seed) is trained once: a process claims ``runs/<tag>/claim.json`` before training
it (created atomically; the first claimant wins) and passes over runs claimed by a live process. A claim whose
process is gone (same host, pid not running) is stale and is taken over; the run then resumes from its epoch
checkpoint. Finished runs are merged into ``results.json`` under an exclusive lock (``results.json.lock``), so
that no process overwrites another's runs.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from reid_aug.utils.io import atomic_create_text, atomic_write_text

log = logging.getLogger(__name__)


def claim_path(folder: Path, tag: str) -> Path:
    return Path(folder) / "runs" / tag / "claim.json"


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _alive(owner: dict) -> bool:
    """Whether the claim's process still runs (another host's claim is taken as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def read_claim(folder: Path, tag: str) -> dict | None:
    try:
        return json.loads(claim_path(folder, tag).read_text())
    except (OSError, ValueError):
        return None


def held_elsewhere(folder: Path, tag: str) -> dict | None:
    """The claim on ``tag`` of another live process, or None."""
    owner = read_claim(folder, tag)
    if owner is None or (owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid()):
        return None
    return owner if _alive(owner) else None


def claim(folder: Path, tag: str) -> bool:
    """Claim run ``tag`` of ``folder`` for this process; False where another live process holds it."""
    path = claim_path(folder, tag)
    if atomic_create_text(path, json.dumps(_me()) + "\n"):
        return True
    owner = read_claim(folder, tag)
    if owner is not None and (owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()):
        return True
    if owner is not None and _alive(owner):
        return False
    log.info("%s: the claim of process %s is stale; taking the run over", tag, (owner or {}).get("pid"))
    atomic_write_text(path, json.dumps(_me()) + "\n")
    return True


def release(folder: Path, tag: str) -> None:
    claim_path(folder, tag).unlink(missing_ok=True)


@contextlib.contextmanager
def results_lock(results_json: Path) -> Iterator[None]:
    """An exclusive lock on ``results.json`` (an flock on ``results.json.lock``) for a read-merge-write."""
    lock = Path(str(results_json) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
