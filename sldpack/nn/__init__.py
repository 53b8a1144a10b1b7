"""Everything that needs torch: architecture zoo, torch init fast path, unroll, distiller, replay.

Importing :mod:`sldpack` never imports this subpackage.
"""
