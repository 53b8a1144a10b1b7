"""Build hooks (project metadata lives in pyproject.toml): the optional C kernel of the portable init, and
the browser viewer's files shipped inside the package.

``sldpack.init._kernels`` (sldpack/init/_kernels.c) reproduces the numpy reference's bits faster. It is
optional: without a C compiler the build skips it and ``sldpack.init`` uses the numpy reference.
The flags are part of its correctness (spec/SLDP-1-init.md section 1): no fused multiply-add, no
fast-math reassociation, SSE2 (not x87) floating point on 32-bit x86.

``sldp view`` serves ``viewer/`` and the JavaScript reader ``js/`` (repository root). A built wheel carries
a copy of them as ``sldpack/_web/`` (``BuildPy``); an editable install serves them from the checkout
(``sldpack/cli/cmd_view.py:web_root``).
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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


_WEB = ("viewer", "js/src", "js/vendor", "js/package.json")  # what `sldp view` serves, and the package file


class BuildPy(build_py):
    """Copy the viewer and the JavaScript reader into the built package as ``sldpack/_web/``."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "sldpack" / "_web"
        for part in _WEB:
            src = root / part
            if src.is_dir():
                shutil.copytree(src, dest / part, dirs_exist_ok=True)
            elif src.is_file():
                (dest / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / part)


setup(
    ext_modules=[Extension("sldpack.init._kernels", ["sldpack/init/_kernels.c"], optional=True)],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
