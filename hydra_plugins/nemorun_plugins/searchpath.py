"""Search-path plugin: folders in ``NEMORUN_CONFIG_PATH`` come BEFORE nemorun's packaged configs.

Why a plugin and not ``hydra.searchpath``: entries added there (or with ``--config-dir``) come
after the packaged tree, so a user's ``executor/slurm.yaml`` could add options but never replace
the packaged one of the same name. Prepending with the ``main`` provider as anchor lets a team
keep its cluster defaults in one folder that wins. Imported by Hydra's plugin scan at every
start-up, so it imports nothing beyond Hydra's own plugin API (and nemorun.errors, stdlib only).

The user's folders are read through :class:`PrintableFileConfigSource`: a file or folder name there
can hold control characters (ESC, BEL, CR, newline), and Hydra prints option names raw in
``--help``, TAB completion and "available options" errors. Listing them escaped, as error lines
quote user text (:func:`nemorun.errors.printable`), makes every one of those outputs agree, cached
or not, and the escaped name a user sees is one they can type back to select that file.
"""
from __future__ import annotations

import os
from typing import List, Optional

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig

from nemorun.errors import ConfigError, printable

SCHEME = "nemorun-file"


def shown(name: str) -> str:
    """``name`` as listed: control characters escaped as error lines escape them; bytes that are
    not UTF-8 (held as surrogate escapes) are kept, so they print as the bytes of the file name."""
    return "".join(c if "\udc80" <= c <= "\udcff" else printable(c) for c in name)


class PrintableFileConfigSource(FileConfigSource):
    """A config folder whose names are listed with control characters escaped; a path given in
    that escaped form is read from the file it stands for (a name that really exists wins)."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _real(self, config_path: str) -> str:
        """``config_path`` with each escaped part replaced by the real name it was listed as."""
        real = self.path
        out: list[str] = []
        for part in config_path.split("/"):
            # every escape has a backslash: other names (all but odd ones) cost nothing here
            if "\\" in part and shown(part) == part and not os.path.lexists(os.path.join(real, part)):
                try:
                    part = next((n for n in sorted(os.listdir(real)) if n != part and shown(n) == part), part)
                except OSError:
                    pass
            out.append(part)
            real = os.path.join(real, part)
        return "/".join(out)

    def load_config(self, config_path: str) -> ConfigResult:
        real = self._real(self._normalize_file_name(config_path))
        result = super().load_config(real)
        if _sets_searchpath(result, root_level="/" not in real.strip("/")):
            raise ConfigError(SEARCHPATH_IN_FILE.format(file=printable(os.path.join(self.path, real))))
        return result

    def is_group(self, config_path: str) -> bool:
        return super().is_group(self._real(config_path))

    def is_config(self, config_path: str) -> bool:
        return super().is_config(self._real(self._normalize_file_name(config_path)))

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        return sorted({shown(n) for n in super().list(self._real(config_path), results_filter)})


# why refused rather than followed or ignored: Hydra follows the primary config's search path
# (a rerun would then read those folders as they are then, not as the launch saw them: the
# record copies only the config folders) and silently drops an option file's one
SEARCHPATH_IN_FILE = ("{file}: hydra.searchpath is not supported in a config file: give your config folder with "
                      "--config-dir DIR (or NEMORUN_CONFIG_PATH), which a launch records so that rerun and --resume "
                      "compose from its copy")


def _sets_searchpath(result: ConfigResult, root_level: bool) -> bool:
    """Whether the file puts a value at ``hydra.searchpath`` (its ``# @package`` header decides
    where its keys land: by default a top-level file's at the root, an option's in its group)."""
    package = result.header.get("package")
    if package is None:
        package = "_global_" if root_level else "_group_"
    where = [p for p in package.split(".") if p != "_global_"]
    node = result.config.get("hydra") if where == [] and isinstance(result.config, DictConfig) else result.config
    return where in ([], ["hydra"]) and isinstance(node, DictConfig) and "searchpath" in node


class NemorunSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        folders = [d for d in os.environ.get("NEMORUN_CONFIG_PATH", "").split(os.pathsep) if d]
        for folder in folders:  # first listed = highest priority: each is inserted just before main
            path = os.path.abspath(os.path.expanduser(folder))
            search_path.prepend(provider="nemorun-user", path=f"{SCHEME}://{path}", anchor=SearchPathQuery(provider="main"))
