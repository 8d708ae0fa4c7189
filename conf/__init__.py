"""Hydra config tree of nemorun (``pkg://nemorun.conf``).

Importing this package registers the structured-config schemas, which Hydra needs before it can
compose any option: Hydra imports it itself when it looks for the primary config. The same
import makes Hydra's merge keep the text typed on the command line for str fields (``1.10`` stays
``1.10``; see :func:`nemorun.compose.keep_literals_in_merges`), so every entry point that composes
nemorun's configs (the CLI, the Python API, ``hydra.compose`` in tests, multirun) gets it.
"""
from nemorun.compose import keep_literals_in_merges as _keep_literals
from nemorun.schemas import register as _register

_register()
_keep_literals()
