"""Portable, bit-exact theta0: Philox4x32-10 streams and init schemes (spec annex SLDP-1-init.md).

numpy only; :mod:`sldpack.nn.init` is the torch fast path that reproduces the same bits in place.
"""

from __future__ import annotations

from sldpack.init.philox import derive_stream, philox4x32_10, stream_words
from sldpack.init.schemes import (
    DEFAULT_SCHEME,
    SCHEMES,
    fans,
    generate,
    init_parameters,
    param_kind,
    tensor_sha256,
    theta0_digests,
)

__all__ = [
    "DEFAULT_SCHEME",
    "SCHEMES",
    "derive_stream",
    "fans",
    "generate",
    "init_parameters",
    "param_kind",
    "philox4x32_10",
    "stream_words",
    "tensor_sha256",
    "theta0_digests",
]
