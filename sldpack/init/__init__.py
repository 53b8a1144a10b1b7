"""Portable, bit-exact theta0: Philox4x32-10 streams and init schemes (spec annex SLDP-1-init.md).

numpy only, plus an optional compiled kernel (``sldpack.init._kernels``, built by ``pip install`` when a
C compiler is present) that the random schemes use by default and that produces the same bits
(:mod:`sldpack.init.backend`; ``backend="numpy"`` or ``SLDP_INIT_BACKEND=numpy`` force the reference).
:mod:`sldpack.nn.init` is the torch path that fills modules in place, threaded.
"""

from __future__ import annotations

from sldpack.init.backend import BACKENDS, c_kernel_available, default_backend
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
    "BACKENDS",
    "DEFAULT_SCHEME",
    "SCHEMES",
    "c_kernel_available",
    "default_backend",
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
