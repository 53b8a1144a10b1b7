"""One module per architecture family of the zoo; use :mod:`sldpack.nn.zoo` to build them."""

from __future__ import annotations

__all__: list[str] = []
