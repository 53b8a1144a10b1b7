"""Run a reader over a conformance corpus (``spec/conformance/``): this package's, or any external program.

A corpus is a folder with ``index.json`` listing cases. A ``valid`` case must read, verify, and match its
JSON sidecar (header version, decoded manifest, per-tensor dtype/shape/SHA-256). An ``invalid`` case must
be rejected with the listed error code at the listed byte offset, and with nothing but an ``SldpError``.

External readers (:func:`run_external`, ``sldp conformance --reader 'CMD {file}'``) speak the protocol of
``spec/conformance/README.md``: one JSON object on the last line of stdout, ``{"valid": true}`` or
``{"valid": false, "code": "E_...", "offset": N}``. ``python -m sldpack.format.conformance --one FILE`` is
this package's reader speaking that protocol.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sldpack.errors import DataError, FormatError, SldpError, UsageError
from sldpack.format import canonical_msgpack
from sldpack.format.constants import HEADER_SIZE
from sldpack.format.container import read

__all__ = ["CaseResult", "ReaderOptions", "jsonable", "load_index", "main", "run_case", "run_corpus", "run_external",
           "verdict"]

READER_EXIT_OK = (0, 1)
"""Exit statuses an external reader may use with a verdict; anything else (a signal, 2, 3, ...) is a crash."""


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one conformance case."""

    file: str
    expected: str
    got: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "expected": self.expected, "got": self.got, "passed": self.passed}


def jsonable(v: Any) -> Any:
    """The JSON form sidecars use for decoded msgpack: bin becomes ``{"$bin": hex}``."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return {"$bin": v.hex()}
    return v


def _valid(path: Path, sidecar: Mapping[str, Any]) -> str | None:
    """Return None when the file matches its sidecar, else what differs."""
    with read(path) as f:
        hdr = sidecar["header"]
        if [f.header.version_major, f.header.version_minor] != [hdr["version_major"], hdr["version_minor"]]:
            return f"version {f.header.version_major}.{f.header.version_minor}"
        raw = path.read_bytes()[HEADER_SIZE:HEADER_SIZE + f.header.manifest_length]
        decoded, _ = canonical_msgpack.decode(raw)
        if jsonable(decoded) != sidecar["manifest"]:
            return "manifest differs from sidecar"
        want = sidecar["tensors"]
        if set(want) != set(f.manifest.tensors):
            return "tensor names differ from sidecar"
        for name, t in want.items():
            info = f.manifest.tensors[name]
            digest = hashlib.sha256(f._raw(name)).hexdigest()
            if (info.dtype, list(info.shape), digest) != (t["dtype"], t["shape"], t["sha256"]):
                return f"tensor {name!r} differs from sidecar"
    return None


def run_case(root: Path, case: Mapping[str, Any]) -> CaseResult:
    """Run one case of ``index.json`` (paths relative to ``root``)."""
    file = str(case["file"])
    path = root / file
    if case["expect"] == "valid":
        expected = "valid"
        try:
            sidecar = json.loads((root / case["sidecar"]).read_text(encoding="utf-8"))
            diff = _valid(path, sidecar)
        except SldpError as exc:
            code = exc.code if isinstance(exc, FormatError) else type(exc).__name__
            return CaseResult(file, expected, f"rejected {code}", False)
        except Exception as exc:  # a crash is a failure of the reader, reported as such
            return CaseResult(file, expected, f"CRASH {type(exc).__name__}: {exc}", False)
        return CaseResult(file, expected, "valid" if diff is None else diff, diff is None)
    expected = f"{case['code']} @ {case['offset']}"
    try:
        with read(path):
            pass
    except FormatError as exc:
        got = f"{exc.code} @ {exc.offset}"
        return CaseResult(file, expected, got, exc.code == case["code"] and exc.offset == case["offset"])
    except SldpError as exc:
        return CaseResult(file, expected, f"{type(exc).__name__}: {exc}", False)
    except Exception as exc:
        return CaseResult(file, expected, f"CRASH {type(exc).__name__}: {exc}", False)
    return CaseResult(file, expected, "accepted", False)


def load_index(root: Path) -> list[dict[str, Any]]:
    """The cases of ``root/index.json``.

    Raises:
        DataError: the index is missing or malformed.
    """
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        cases = index["cases"]
        if not isinstance(cases, list) or not all(isinstance(c, dict) and "file" in c and "expect" in c
                                                  for c in cases):
            raise TypeError("cases must be a list of objects with file and expect")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{root / 'index.json'}: not a conformance index ({exc})") from None
    return cases


def run_corpus(root: Path) -> list[CaseResult]:
    """Run every case listed in ``root/index.json`` with this package's reader.

    Raises:
        DataError: the index is missing or malformed.
    """
    return [run_case(root, c) for c in load_index(root)]


# --- the external-reader protocol ---------------------------------------------------------------------

def verdict(path: str | Path) -> dict[str, Any]:
    """This package's reader as a protocol verdict: read and fully verify ``path``.

    Returns ``{"valid": true, "manifest": <decoded manifest as JSON>, "tensors": {...}}`` (the optional
    fields the harness compares with a valid case's sidecar) or ``{"valid": false, "code": .., "offset": ..}``.
    """
    p = Path(path)
    try:
        with read(p) as f:
            raw = p.read_bytes()[HEADER_SIZE:HEADER_SIZE + f.header.manifest_length]
            decoded, _ = canonical_msgpack.decode(raw)
            tensors = {n: {"dtype": t.dtype, "shape": list(t.shape), "sha256": hashlib.sha256(f._raw(n)).hexdigest()}
                       for n, t in f.manifest.tensors.items()}
            return {"valid": True, "header": {"version_major": f.header.version_major,
                                              "version_minor": f.header.version_minor},
                    "manifest": jsonable(decoded), "tensors": tensors}
    except FormatError as exc:
        return {"valid": False, "code": exc.code, "offset": exc.offset}


@dataclass(frozen=True)
class ReaderOptions:
    """How to run and judge an external reader.

    Attributes:
        command: the command line, with ``{file}`` where the case's absolute path goes (split like a POSIX
            shell, run without a shell).
        timeout: seconds per case; a reader still running then has failed the case.
        codes_only: compare verdict and code, not the offset.
        select: glob patterns on the case's ``file``; empty = every case.
        codes: run only the invalid cases expecting one of these codes (and every valid case); empty = all.
        jobs: cases run at the same time (each case is its own process).
    """

    command: str
    timeout: float = 10.0
    codes_only: bool = False
    select: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    jobs: int = 1


def _argv(command: str, file: Path) -> list[str]:
    try:
        parts = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--reader: cannot split the command line ({exc})") from None
    if not parts or not any("{file}" in p for p in parts):
        raise UsageError("--reader: the command must contain {file} (where the case's path goes)")
    return [p.replace("{file}", str(file)) for p in parts]


def _parse_reply(stdout: str) -> dict[str, Any] | str:
    """The reader's verdict object from its stdout, or a description of what is wrong with it."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return "no output"
    try:
        reply = json.loads(lines[-1])
    except ValueError:
        return f"last line is not JSON: {lines[-1][:80]!r}"
    if not isinstance(reply, dict) or not isinstance(reply.get("valid"), bool):
        return f"not a verdict object: {lines[-1][:80]!r}"
    if reply["valid"] is False and (not isinstance(reply.get("code"), str)
                                    or isinstance(reply.get("offset"), bool)
                                    or not isinstance(reply.get("offset"), (int, type(None)))):
        return f"an invalid verdict needs a string code and an integer offset: {lines[-1][:80]!r}"
    return reply


def _judge(root: Path, case: Mapping[str, Any], reply: dict[str, Any], codes_only: bool) -> tuple[str, bool]:
    if case["expect"] == "valid":
        if not reply["valid"]:
            return f"rejected {reply.get('code')} @ {reply.get('offset')}", False
        try:
            sidecar = json.loads((root / str(case["sidecar"])).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"sidecar of {case['file']}: {exc}") from None
        for key in ("header", "manifest", "tensors"):  # optional in the reply; compared when given
            if key in reply and reply[key] != sidecar.get(key):
                return f"valid, but its {key} differs from the sidecar", False
        return "valid", True
    if reply["valid"]:
        return "accepted", False
    got = f"{reply['code']} @ {reply.get('offset')}"
    ok = reply["code"] == case["code"] and (codes_only or reply.get("offset") == case["offset"])
    return got, ok


def run_external(root: Path, opts: ReaderOptions) -> list[CaseResult]:
    """Run an external reader on the corpus cases ``opts`` selects and judge each verdict.

    A case fails when the reader's verdict, code or (unless ``codes_only``) offset differs from the index,
    when it exits with a status other than 0 or 1, is killed, times out, or prints no verdict.

    Raises:
        DataError: the index or a sidecar is malformed. UsageError: the command has no ``{file}``.
    """
    cases = load_index(root)
    _argv(opts.command, root)  # fail early on a bad command line
    chosen = [c for c in cases
              if (not opts.select or any(fnmatch.fnmatch(str(c["file"]), pat) for pat in opts.select))
              and not (opts.codes and c["expect"] == "invalid" and c.get("code") not in opts.codes)]
    if opts.jobs <= 1:
        return [_run_one(root, c, opts) for c in chosen]
    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:  # threads only wait on child processes
        return list(pool.map(lambda c: _run_one(root, c, opts), chosen))


def _run_one(root: Path, case: Mapping[str, Any], opts: ReaderOptions) -> CaseResult:
    file = str(case["file"])
    expected = "valid" if case["expect"] == "valid" else f"{case['code']} @ {case['offset']}"
    argv = _argv(opts.command, (root / file).resolve())
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=opts.timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return CaseResult(file, expected, f"TIMEOUT after {opts.timeout:g} s", False)
    except OSError as exc:
        raise UsageError(f"--reader: cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    if proc.returncode not in READER_EXIT_OK:
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:80]
        return CaseResult(file, expected, f"CRASH exit {proc.returncode} {tail}".rstrip(), False)
    reply = _parse_reply(proc.stdout)
    if isinstance(reply, str):
        return CaseResult(file, expected, f"BAD OUTPUT {reply}", False)
    got, ok = _judge(root, case, reply, opts.codes_only)
    return CaseResult(file, expected, got, ok)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sldpack.format.conformance --one FILE``: print this reader's verdict as one JSON line."""
    ap = argparse.ArgumentParser(prog="python -m sldpack.format.conformance",
                                 description="sldpack's reader speaking the conformance reader protocol")
    ap.add_argument("--one", required=True, metavar="FILE", help="the .sldp file to read and verify")
    args = ap.parse_args(argv)
    print(json.dumps(verdict(args.one), ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
