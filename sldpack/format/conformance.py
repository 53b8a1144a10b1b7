"""Run this package's reader over a conformance corpus (``spec/conformance/``).

A corpus is a folder with ``index.json`` listing cases. A ``valid`` case must read, verify, and match its
JSON sidecar (header version, decoded manifest, per-tensor dtype/shape/SHA-256). An ``invalid`` case must
be rejected with the listed error code at the listed byte offset, and with nothing but an ``SldpError``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sldpack.errors import DataError, FormatError, SldpError
from sldpack.format import canonical_msgpack
from sldpack.format.constants import HEADER_SIZE
from sldpack.format.container import read

__all__ = ["CaseResult", "jsonable", "run_case", "run_corpus"]


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


def run_corpus(root: Path) -> list[CaseResult]:
    """Run every case listed in ``root/index.json``.

    Raises:
        DataError: the index is missing or malformed.
    """
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        cases = index["cases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{root / 'index.json'}: not a conformance index ({exc})") from None
    return [run_case(root, c) for c in cases]
