"""Who holds a journal claim, and whether that process still lives.

Two ComfyUI processes may share one user folder (two instances on one machine, or a
network drive seen by several machines), or several workers one database (money/store.py).
A claim ("submitting") names its owner: this machine, this process (pid and start time) and
a random part with the worker's name. Another process may take the claim over only when the
owner is dead:

- on the same machine (same kernel boot and pid namespace) the owner's pid and start
  time say so at once: a dead owner is seen without waiting;
- anywhere else, the owner renews a lease on each claim it holds (money/journal.py);
  a claim whose lease has run out belongs to a process that is gone (or hung).
"""

import os
import uuid
from typing import Optional

from .store import worker_name


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, ValueError):
        return None


def _machine() -> str:
    """This kernel boot and pid namespace (a container has its own), or a random id where unknown."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = None
    if boot and namespace:
        return f"{boot}.{namespace}"
    return f"unknown-{uuid.uuid4().hex}"  # never matches another process: its lease decides


def process_start(pid: int) -> Optional[str]:
    """When process `pid` started (clock ticks since boot, Linux), or None if it does not exist
    or this system does not say."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of the whole line: starttime


MACHINE = _machine()
OWNER = (f"v2|{MACHINE}|{os.getpid()}|{process_start(os.getpid()) or '?'}|{uuid.uuid4().hex[:8]}@"
         + worker_name().replace("|", "/"))


def dead_here(owner: Optional[str]) -> bool:
    """True only if `owner` is a process of this machine that no longer runs (pid gone, or
    reused by a process that started later). False when unknown: the lease decides then."""
    parts = (owner or "").split("|")
    if len(parts) != 5 or parts[0] != "v2" or parts[1] != MACHINE or parts[3] == "?":
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    return process_start(pid) != parts[3]
