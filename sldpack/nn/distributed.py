"""Data-parallel distillation on ``torch.distributed``: process group, real-batch sharding, launcher.

Every rank holds the same distilled data and runs the same unroll; the *real* batch of each outer
iteration is split: all ranks draw the global batch from the same random stream (so the union of the
shares is exactly the 1-process batch, whatever the world size) and each keeps its contiguous share
(:func:`shard_bounds`). Each rank's outer loss is its share's cross-entropy *sum* divided by the global
batch size K, so the all-reduced (summed) hypergradients equal the gradient of the global mean. Rank 0
alone writes logs, checkpoints and the file. The checkpoint holds nothing that depends on the world size,
so ``--resume`` works with the same or another number of processes.

With ``shard_images`` (recompute unroll, no batch norm) every inner step's images are split across the
ranks as well (:class:`sldpack.nn.hypergrad.ImageShard`): each rank's share of the inner gradient and of
every Hessian-vector product is summed across ranks, so the unroll work shrinks with the world size.

Batch norm: the outer forward normalises each rank's share with that share's statistics (as
``DistributedDataParallel`` without ``SyncBatchNorm``); with batch-norm architectures and more than one
process the outer gradient is therefore that of a slightly different objective. The inner unroll (and
so the file's replay) does not depend on the world size at all.

Launch: ``torchrun --nproc_per_node N -m sldpack.cli.main distill ...`` (multi-node: add ``--nnodes``,
``--node_rank`` and ``--rdzv_endpoint HOST:PORT``), or ``sldp distill --nproc N`` which starts N local
processes with an env rendezvous on 127.0.0.1 (:func:`launch`). gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor

from sldpack.errors import UsageError

__all__ = [
    "DistContext",
    "free_port",
    "launch",
    "session",
    "shard_bounds",
    "worker_argv",
]

#: seconds a collective may wait for the other ranks (rank 0's final phases run while the others wait)
DEFAULT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group (world size 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and the file."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def all_reduce_sum(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Sum ``tensors`` over all ranks (one flat collective); identity with one process."""
        if not self.active:
            return list(tensors)
        flat = torch.cat([t.reshape(-1) for t in tensors])
        tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
        out: list[Tensor] = []
        pos = 0
        for t in tensors:
            out.append(flat[pos:pos + t.numel()].view_as(t))
            pos += t.numel()
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled); identity with one process."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous share ``[lo, hi)`` of ``n`` items for ``rank``; sizes differ by at most one.

    Raises:
        UsageError: fewer items than ranks (a rank would get none).
    """
    if n < world_size:
        raise UsageError(f"the real batch ({n}) must hold at least one image per process ({world_size})")
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer") from exc


@contextlib.contextmanager
def session(device: torch.device, *, timeout_s: float | None = None) -> Iterator[DistContext]:
    """The process group for a distill run.

    Uses an already initialised group; otherwise initialises one when the environment says so
    (``WORLD_SIZE`` > 1, as set by ``torchrun`` or :func:`launch`) and destroys it on exit; otherwise
    yields a 1-process context. The backend is NCCL for CUDA devices, gloo otherwise.
    """
    if tdist.is_available() and tdist.is_initialized():
        yield DistContext(tdist.get_rank(), tdist.get_world_size(), _env_int("LOCAL_RANK", 0),
                          str(tdist.get_backend()))
        return
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        yield DistContext()
        return
    if not tdist.is_available():
        raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    local = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(f"process with LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA "
                             "device(s): use at most one process per GPU")
        torch.cuda.set_device(local)
    t = timeout_s if timeout_s is not None else float(os.environ.get("SLDP_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    tdist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=t))
    ok = False
    try:
        yield DistContext(tdist.get_rank(), tdist.get_world_size(), local, backend)
        ok = True
    finally:
        if ok:
            # every rank leaves together: rank 0 hosts the rendezvous store, and tearing the group down while
            # another rank still finishes its last collective aborted that rank in gloo's C++ threads
            # ("terminate called without an active exception", exit 250) on a loaded machine
            tdist.barrier()
        tdist.destroy_process_group()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the env rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
           timeout_s: float | None = None) -> int:
    """Run ``argv`` in ``nproc`` local processes joined by an env rendezvous on 127.0.0.1.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and a free
    ``MASTER_PORT`` (what ``torchrun --standalone`` would give it). When one process fails the others are
    terminated, so a crash never leaves the rest waiting in a collective.

    Returns:
        0 when every process exited 0, else the first non-zero exit code (124 on timeout).
    """
    if nproc < 1:
        raise UsageError(f"{{nproc}} must be >= 1, got {nproc}", field="nproc")
    base = dict(os.environ if env is None else env)
    base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(nproc),
                 "LOCAL_WORLD_SIZE": str(nproc)})
    procs: list[subprocess.Popen[bytes]] = []
    for r in range(nproc):
        e = dict(base, RANK=str(r), LOCAL_RANK=str(r))
        procs.append(subprocess.Popen(list(argv), env=e))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    code = 0
    try:
        while True:
            states = [p.poll() for p in procs]
            bad = [c for c in states if c not in (None, 0)]
            if bad:
                code = int(bad[0])
                break
            if all(c == 0 for c in states):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                code = 124
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        code = 130
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return code


def worker_argv(module: str, *args: str) -> list[str]:
    """``[python, -m, module, *args]`` with this interpreter (helper for :func:`launch`)."""
    return [sys.executable, "-m", module, *args]
