"""Adapters between the study and the parts it drives, one module per part.

Each translates a ``StudySpec``/``RunSpec`` into the public arguments of another package, so the
study code does not depend on their internals.
"""
