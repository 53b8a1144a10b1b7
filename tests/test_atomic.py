"""``sldpack.atomic``: the target is old or new, never half; leftovers of killed writers are cleared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sldpack import atomic
from sldpack.atomic import atomic_write_bytes, atomic_writer


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "f.bin"
    out.write_bytes(b"old")
    def crash_mid_write() -> None:
        with atomic_writer(out) as fh:
            fh.write(b"half")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    atomic_write_bytes(out, b"new")
    assert out.read_bytes() == b"new"


def test_only_temporaries_of_dead_processes_of_this_host_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "f[1].sldp"  # glob characters in the name are matched literally
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    host = atomic._HOST
    stale = tmp_path / f".{out.name}.{host}.{dead_pid}.aaaaaaaaaaaa.tmp"
    live = tmp_path / f".{out.name}.{host}.{os.getppid()}.bbbbbbbbbbbb.tmp"  # a running process
    other_host = tmp_path / f".{out.name}.00000000.{dead_pid}.cccccccccccc.tmp"
    foreign = tmp_path / f".{out.name}.notes.tmp"
    other_file = tmp_path / f".g.sldp.{host}.{dead_pid}.dddddddddddd.tmp"
    for p in (stale, live, other_host, foreign, other_file):
        p.write_bytes(b"x")
    atomic_write_bytes(out, b"data")
    assert out.read_bytes() == b"data"
    assert not stale.exists()
    assert live.exists() and other_host.exists() and foreign.exists() and other_file.exists()
