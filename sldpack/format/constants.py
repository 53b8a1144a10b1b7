"""Every number, name and code of the SLDP format, in one place.

Reader, writer, CLI and conformance runner import from here; ``tests/format/test_spec_constants.py``
parses the tables in ``spec/SLDP-1.md`` and checks them against this module, so spec and code
cannot drift apart silently.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

__all__ = [
    "ALLOWED_DTYPES",
    "ARCH_ID_PATTERN",
    "AUDIT_VERDICTS",
    "BYTE_ORDER",
    "COMPRESSIONS",
    "DECISION_DELTA_SOURCES",
    "DECISION_RULES",
    "DECISION_TARGET_PATTERN",
    "DTYPE_FOR_NUMPY_NAME",
    "DTYPE_ITEMSIZE",
    "DTYPE_NUMPY",
    "ERROR_CODES",
    "HEADER_DIGEST_PREFIX",
    "HEADER_SIZE",
    "HEADER_STRUCT",
    "INIT_RNG",
    "INIT_SCHEMES",
    "LABEL_TRANSFORMS",
    "MAGIC",
    "MAX_DECODED_PAYLOAD",
    "MAX_MANIFEST_BYTES",
    "MAX_MSGPACK_DEPTH",
    "MAX_PROBE_COUNT",
    "MAX_RANK",
    "MAX_SKETCH_VALUES",
    "MAX_ST_HEADER_BYTES",
    "MAX_TENSORS",
    "MAX_TENSOR_NAME_BYTES",
    "MEMBERSHIP_TARGETS",
    "MINOR_FOR_ROOT_KEY",
    "ROLES",
    "TEXT_MODE_MAGICS",
    "UTC_TIME_PATTERN",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "ZSTD_LEVEL_DEFAULT",
    "ZSTD_MAGIC",
    "minor_version_for",
    "role_for_name",
]

# --- fixed header -----------------------------------------------------------------------------
# PNG-style magic (8 bytes): the high-bit byte catches 7-bit channels, "\r\n" catches CRLF->LF
# translation, the lone final "\n" catches LF->CRLF translation.
MAGIC: Final = b"\x89SLDP\r\n\n"
# What a text-mode transfer makes of the magic's bytes 5..: CRLF->LF, LF->CRLF on every LF, LF->CRLF on
# lone LFs only. A file starting with b"\x89SLDP" + one of these is E_TEXT_MODE (spec section 3).
TEXT_MODE_MAGICS: Final = (b"\n\n", b"\r\r\n", b"\r\n\r")
BYTE_ORDER: Final = "little"
VERSION_MAJOR: Final = 1
VERSION_MINOR: Final = 1  # the newest minor version this package reads and writes
# Optional root keys that a minor version added (spec section 3, table "versions"): key -> the minor version
# that introduced it. A writer writes the lowest minor that carries a file's content
# (:func:`minor_version_for`), so a file without any of these keys stays a byte-identical 1.0 file.
MINOR_FOR_ROOT_KEY: Final[dict[str, int]] = {
    "decision": 1,  # the image-level decision rule (spec 5.10)
    "card": 1,  # the model card (spec 5.11)
}

# magic, major u16, minor u16, reserved u32 (must be 0), manifest_length u64, payload_length u64,
# manifest_sha256 (32 bytes)
HEADER_STRUCT: Final = struct.Struct("<8sHHIQQ32s")
HEADER_SIZE: Final = HEADER_STRUCT.size  # 64
# manifest_sha256 covers the header bytes before it (magic .. payload_length) and then the manifest, so
# that every header bit is covered by some check (version_minor has no other one).
HEADER_DIGEST_PREFIX: Final = 32

# Field offsets inside the fixed header (used in error messages and the spec's layout table).
OFF_MAGIC: Final = 0
OFF_VERSION_MAJOR: Final = 8
OFF_VERSION_MINOR: Final = 10
OFF_RESERVED: Final = 12
OFF_MANIFEST_LENGTH: Final = 16
OFF_PAYLOAD_LENGTH: Final = 24
OFF_MANIFEST_SHA256: Final = 32

# --- limits -----------------------------------------------------------------------------------
MAX_MANIFEST_BYTES: Final = 1 << 20  # 1 MiB: a manifest is metadata, never bulk data
MAX_TENSORS: Final = 4096
MAX_RANK: Final = 8
MAX_TENSOR_NAME_BYTES: Final = 256
MAX_ST_HEADER_BYTES: Final = 1 << 20  # safetensors JSON header inside the payload
MAX_DECODED_PAYLOAD: Final = 1 << 32  # 4 GiB decoded tensor bytes
MAX_MSGPACK_DEPTH: Final = 32  # every value counts, map keys too: root map 0, its keys and values 1, ...
# ranges of manifest fields (E_SCHEMA, spec 5.9): a fingerprint compares at least one probe, and a sketch
# has 1..64 values per tensor (a verifier computes k x n sums per tensor; sldpack writes k = 3)
MAX_PROBE_COUNT: Final = 1 << 16
MAX_SKETCH_VALUES: Final = 64
# provenance times (spec 5.3): RFC 3339 in UTC with "Z", optional fraction; the calendar is checked apart
UTC_TIME_PATTERN: Final = r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z$"

# --- tensors ----------------------------------------------------------------------------------
# safetensors dtype string -> item size in bytes. Order is the spec's table order.
DTYPE_ITEMSIZE: Final[dict[str, int]] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "U8": 1,
}
ALLOWED_DTYPES: Final = frozenset(DTYPE_ITEMSIZE)

# The one dtype table: storage dtype -> little-endian numpy dtype string of the stored bytes (BF16 is
# carried as raw uint16 words) and the numpy dtype name it decodes to; every other map derives from it.
DTYPE_NUMPY: Final[dict[str, str]] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "U8": "u1",
}
DTYPE_FOR_NUMPY_NAME: Final[dict[str, str]] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "uint8": "U8",
}
"""numpy (and torch, without the ``torch.`` prefix) dtype name -> storage dtype."""

ROLES: Final = ("images", "labels", "lrs", "bn_stats", "theta0_check", "extra")
_ROLE_BY_NAME: Final = {"images": "images", "labels": "labels", "lrs": "lrs"}
_ROLE_BY_PREFIX: Final = (("bn.", "bn_stats"), ("theta0.", "theta0_check"))


def role_for_name(name: str) -> str:
    """The one role a tensor name implies (spec section 6.2): names and roles must agree."""
    if name in _ROLE_BY_NAME:
        return _ROLE_BY_NAME[name]
    for prefix, role in _ROLE_BY_PREFIX:
        if name.startswith(prefix) and len(name) > len(prefix):
            return role
    return "extra"


# arch.id grammar: name@version, name a lowercase identifier, version a decimal without leading zeros
ARCH_ID_PATTERN: Final = r"^[a-z][a-z0-9_]{0,62}@(0|[1-9][0-9]{0,8})$"
INIT_RNG: Final = "philox4x32-10"
# init schemes a 1.0 manifest may name ("constant" exists in the init annex but has no field for its value)
INIT_SCHEMES: Final = ("xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal", "zeros", "ones")
COMPRESSIONS: Final = ("none", "zstd")
ZSTD_LEVEL_DEFAULT: Final = 19
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"  # 0xFD2FB528 little-endian; skippable frames are 0x184D2A5? (rejected)
LABEL_TRANSFORMS: Final = ("softmax", "identity")
# the image-level decision rule (spec 5.10, since 1.1)
DECISION_RULES: Final = ("eq9", "argmax")
DECISION_DELTA_SOURCES: Final = ("default", "calibrated")
# decision.calibration.target: maximum held-out HM, or the most specific delta whose held-out sensitivity reaches X
DECISION_TARGET_PATTERN: Final = r"^(max_hm|sensitivity>=(0(\.[0-9]{1,6})?|1(\.0{1,6})?))$"
AUDIT_VERDICTS: Final = ("PASS", "FLAG")
# networks a recorded membership attack may be about (spec 5.3.2): the replayed one, the normally trained one
MEMBERSHIP_TARGETS: Final = ("distilled", "trained")


def minor_version_for(root_keys: Iterable[str]) -> int:
    """The lowest ``version_minor`` that carries a manifest with these root keys (spec section 3)."""
    return max((MINOR_FOR_ROOT_KEY.get(k, 0) for k in root_keys), default=0)


# --- error codes ------------------------------------------------------------------------------
# code -> one-line meaning. Conformance cases name these codes; CLI prints them.
ERROR_CODES: Final[dict[str, str]] = {
    "E_IO": "the file cannot be opened or read",
    "E_TRUNCATED": "the file ends before a declared structure ends",
    "E_MAGIC": "the first 8 bytes are not the SLDP magic",
    "E_TEXT_MODE": "the magic shows CRLF/LF translation: the file went through a text-mode transfer",
    "E_VERSION_MAJOR": "the major version is not one this reader implements",
    "E_RESERVED": "a reserved header field is not zero",
    "E_TRAILING": "bytes follow the declared end of the file",
    "E_LIMIT": "a declared size or count exceeds a hard limit of the spec",
    "E_MANIFEST_DIGEST": "header bytes 0-31 and the manifest do not match the header's manifest_sha256",
    "E_MSGPACK": "the manifest is not well-formed msgpack",
    "E_MSGPACK_TYPE": "the manifest uses a msgpack type the spec forbids (ext, float32, non-string key)",
    "E_MSGPACK_NONCANONICAL": "the manifest is valid msgpack but not in canonical form",
    "E_MSGPACK_DUPLICATE_KEY": "a msgpack map repeats a key",
    "E_MSGPACK_DEPTH": "the manifest nests deeper than the limit",
    "E_SCHEMA": "a manifest field is missing, of the wrong type or out of range",
    "E_ZSTD": "the payload is not a single valid zstd frame",
    "E_ZSTD_SIZE": "the zstd frame's declared or actual size differs from payload.decoded_size",
    "E_ST_HEADER": "the safetensors header is malformed",
    "E_ST_OFFSETS": "tensor data offsets overlap, leave holes or fall outside the data section",
    "E_ST_MISMATCH": "the safetensors header disagrees with the manifest's tensor table",
    "E_DTYPE": "a tensor dtype is not allowed",
    "E_NAME": "a tensor name is empty, too long, has a control character or is duplicated",
    "E_TENSOR_DIGEST": "a tensor's bytes do not match its sha256",
    "E_PAYLOAD_DIGEST": "a compressed payload's stored bytes do not match payload.stored_sha256",
    "E_NONFINITE": "a learning rate (or other value required finite) is NaN or infinite",
}
