#!/usr/bin/env python3
"""A minimal, independent SLDP 1.0 reader of the fixed header, speaking the conformance reader protocol.

Written from ``spec/SLDP-1.md`` alone (standard library only, it does not import sldpack): it checks what
sections 2, 3, 9 (``manifest_sha256``), 10 (header limits) and 12 steps 1-4 (up to the manifest digest)
define, and nothing after that. It is an example of a third-party reader growing into conformance: run it
on the cases it implements,

    sldp conformance spec/conformance --reader 'python3 spec/conformance/tools/minimal_reader.py {file}' \\
        --codes E_TRUNCATED,E_MAGIC,E_TEXT_MODE,E_VERSION_MAJOR,E_RESERVED,E_TRAILING,E_MANIFEST_DIGEST

It prints one JSON line: ``{"valid": true}`` (the header and manifest digest are fine; this reader does
not look further) or ``{"valid": false, "code": "E_...", "offset": N}``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys

MAGIC = b"\x89SLDP\r\n\n"
TEXT_MODE_TAILS = (b"\n\n", b"\r\r\n", b"\r\n\r")  # spec section 3: bytes from offset 5
MAX_MANIFEST_BYTES = 1 << 20
MAX_DECODED_PAYLOAD = 1 << 32
CODES = ("E_TRUNCATED", "E_MAGIC", "E_TEXT_MODE", "E_VERSION_MAJOR", "E_RESERVED", "E_TRAILING",
         "E_MANIFEST_DIGEST", "E_LIMIT")


class RejectError(Exception):
    def __init__(self, code: str, offset: int) -> None:
        super().__init__(code)
        self.code = code
        self.offset = offset


def magic_code(data: bytes) -> str:
    """E_TEXT_MODE or E_MAGIC for first bytes that are not the magic (spec section 3)."""
    if data[:5] == MAGIC[:5] and any(data[5:].startswith(t) for t in TEXT_MODE_TAILS):
        return "E_TEXT_MODE"
    return "E_MAGIC"


def check(data: bytes) -> None:
    size = len(data)
    if size < 64:  # step 1
        if data[:8] == MAGIC[:min(8, size)]:
            raise RejectError("E_TRUNCATED", size)
        raise RejectError(magic_code(data), 0)
    if data[:8] != MAGIC:
        raise RejectError(magic_code(data), 0)
    major, _minor, reserved, mlen, plen = struct.unpack("<HHIQQ", data[8:32])
    if major != 1:
        raise RejectError("E_VERSION_MAJOR", 8)
    if reserved != 0:
        raise RejectError("E_RESERVED", 12)
    if mlen > MAX_MANIFEST_BYTES:
        raise RejectError("E_LIMIT", 16)
    if plen > MAX_DECODED_PAYLOAD:
        raise RejectError("E_LIMIT", 24)
    end = 64 + mlen + plen
    if size < end:
        raise RejectError("E_TRUNCATED", size)
    if size > end:
        raise RejectError("E_TRAILING", end)
    if hashlib.sha256(data[:32] + data[64:64 + mlen]).digest() != data[32:64]:
        raise RejectError("E_MANIFEST_DIGEST", 32)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: minimal_reader.py FILE", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as fh:
        data = fh.read()
    try:
        check(data)
    except RejectError as r:
        print(json.dumps({"valid": False, "code": r.code, "offset": r.offset}))
        return 1
    print(json.dumps({"valid": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
