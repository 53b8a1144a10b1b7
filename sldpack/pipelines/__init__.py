"""Pipelines that join the torch engine (:mod:`sldpack.nn`) with the torch-free medical library
(:mod:`sldpack.medical`) and the format core: data sources, patch sources, evaluation, the demo, the
sharing report and the privacy audit. The CLI is a thin layer over these modules.
"""
