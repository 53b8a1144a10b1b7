"""Build hook for the optional C kernel of the portable init (project metadata lives in pyproject.toml).

``sldpack.init._kernels`` (sldpack/init/_kernels.c) reproduces the numpy reference's bits faster. It is
optional: without a C compiler the build skips it and ``sldpack.init`` uses the numpy reference.
The flags are part of its correctness (spec/SLDP-1-init.md section 1): no fused multiply-add, no
fast-math reassociation, SSE2 (not x87) floating point on 32-bit x86.
"""

from __future__ import annotations

import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_GCC_LIKE = ["-std=c99", "-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-unsafe-math-optimizations",
             "-fno-math-errno"]
if platform.machine().lower() in ("i386", "i486", "i586", "i686", "x86"):
    _GCC_LIKE += ["-msse2", "-mfpmath=sse"]
_MSVC = ["/O2", "/fp:precise"]  # MSVC: precise mode does not contract a*b+c (no /fp:fast, no /fp:contract)


class BuildExt(build_ext):
    """Pick the exactness flags for the compiler actually used."""

    def build_extensions(self) -> None:
        args = _MSVC if self.compiler.compiler_type == "msvc" else _GCC_LIKE
        for ext in self.extensions:
            ext.extra_compile_args = list(args)
        super().build_extensions()


setup(
    ext_modules=[Extension("sldpack.init._kernels", ["sldpack/init/_kernels.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
