"""The one process identity, and the one "is it dead" check."""

from __future__ import annotations

import os
import subprocess

import pytest

from lazyreg.worker import WorkerId


def test_identity_round_trips_through_its_text() -> None:
    me = WorkerId.current()
    assert WorkerId.parse(str(me)) == me
    assert WorkerId.parse("my-host.example-42") == WorkerId("my-host.example", 42)


@pytest.mark.parametrize("text", ["", "nohyphen", "host-", "host-12a", "-12"])
def test_text_that_names_no_worker(text: str) -> None:
    assert WorkerId.parse(text) is None


def test_only_a_process_of_this_host_can_be_known_dead() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    host = WorkerId.current().host
    assert WorkerId(host, proc.pid).known_dead()
    assert not WorkerId(host, os.getpid()).known_dead()
    assert not WorkerId(host, 1).known_dead()  # init: alive, though not ours to signal
    assert not WorkerId("another-host", proc.pid).known_dead()
