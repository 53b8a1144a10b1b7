"""The format core: the ``.sldp`` container, its manifest, codecs and constants (torch-free).

Everything a reader needs lives here and imports only :mod:`sldpack.errors` and :mod:`sldpack.atomic`
besides numpy and zstandard. The public API is re-exported by :mod:`sldpack`.
"""
