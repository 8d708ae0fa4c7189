"""Hydra config tree of nemorun (``pkg://nemorun.conf``).

Importing this package registers the structured-config schemas, which Hydra needs before it can
compose any option: Hydra imports it itself when it looks for the primary config.
"""
from nemorun.schemas import register as _register

_register()
