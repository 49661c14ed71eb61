"""Who holds a claim: an owner id names its machine, process and worker; only a process of this machine is
known dead at once, anywhere else the lease decides (issue 22: workers on other machines)."""

import os
import subprocess
import sys

from support import pack_module


def test_only_an_owner_of_this_machine_is_known_dead_at_once(monkeypatch):
    owner = pack_module("money.owner")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    start = owner.process_start(os.getpid())
    assert not owner.dead_here(owner.OWNER)  # this process lives
    assert owner.dead_here(f"v2|{owner.MACHINE}|{gone.pid}|{start}|abcd1234@gpu-1")
    # The same pid on another machine (another kernel boot or pid namespace): unknown here.
    assert not owner.dead_here(f"v2|another-boot.4026531836|{gone.pid}|{start}|abcd1234@gpu-2")


def test_the_owner_id_names_the_worker(monkeypatch):
    store = pack_module("money.store")
    monkeypatch.setenv("FAL_AUDIO_WORKER_NAME", "gpu|7")
    assert store.worker_name() == "gpu|7"
    monkeypatch.delenv("FAL_AUDIO_WORKER_NAME")
    import socket

    assert store.worker_name() == socket.gethostname()
    assert pack_module("money.owner").OWNER.split("|")[4].split("@")[1] == pack_module("money.journal").WORKER
