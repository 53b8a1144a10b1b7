"""Test helpers shipped with the package (Hypothesis strategies for valid files).

Importing this subpackage needs the ``dev`` extra (hypothesis); ``import sldpack`` does not import it.
"""
