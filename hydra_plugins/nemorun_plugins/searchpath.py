"""Search-path plugin: folders in ``NEMORUN_CONFIG_PATH`` come BEFORE nemorun's packaged configs.

Why a plugin and not ``hydra.searchpath``: entries added there (or with ``--config-dir``) come
after the packaged tree, so a user's ``executor/slurm.yaml`` could add options but never replace
the packaged one of the same name. Prepending with the ``main`` provider as anchor lets a team
keep its cluster defaults in one folder that wins. Imported by Hydra's plugin scan at every
start-up, so it imports nothing beyond Hydra's own plugin API.
"""
from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin


class NemorunSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        folders = [d for d in os.environ.get("NEMORUN_CONFIG_PATH", "").split(os.pathsep) if d]
        for folder in folders:  # first listed = highest priority: each is inserted just before main
            path = os.path.abspath(os.path.expanduser(folder))
            search_path.prepend(provider="nemorun-user", path=f"file://{path}", anchor=SearchPathQuery(provider="main"))
