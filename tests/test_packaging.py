"""Packagers on real temporary git repositories and folders: git (committed tree, subpath,
uncommitted changes refused or included with .gitignore honoured), pattern, hybrid (subfolders,
root with and without conflicts), archive determinism, and a real local run from the archive.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from nemorun.errors import ConfigError
from nemorun.packaging import FIXED_MTIME, archive_name, build
from nemorun.schemas.packagers import GitPackagerConfig, HybridPackagerConfig, PatternPackagerConfig
from tests.helpers import run_cli, git, write_files



@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {
        ".gitignore": "*.log\nbuild/\n",
        "README.md": "hello\n",
        "src/mymod.py": "import os\n\ndef where(tag: str = 'x') -> int:\n    print(f'{tag} cwd={os.getcwd()}', flush=True)\n    return 0\n",
        "src/pkg/__init__.py": "",
        "tools/run.sh": "#!/bin/sh\necho run\n",
    })  # fmt: skip
    os.chmod(root / "tools/run.sh", 0o755)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def test_git_packs_the_committed_tree(repo: Path, tmp_path: Path) -> None:
    path, sha, manifest = build(GitPackagerConfig(), str(repo / "src"), tmp_path)
    files = {n for n, m in _members(path).items() if m.isfile()}
    assert files == {".gitignore", "README.md", "src/mymod.py", "src/pkg/__init__.py", "tools/run.sh"}
    assert _members(path)["tools/run.sh"].mode == 0o755 and _members(path)["README.md"].mode == 0o644
    assert path.name == archive_name(sha) and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert manifest["commit"] and manifest["repository"] == str(repo)


def test_git_subpath_becomes_the_root(repo: Path, tmp_path: Path) -> None:
    path, _, manifest = build(GitPackagerConfig(subpath="src"), str(repo), tmp_path)
    assert {n for n, m in _members(path).items() if m.isfile()} == {"mymod.py", "pkg/__init__.py"}
    assert manifest["source_dir"] == str(repo / "src")
    with pytest.raises(ConfigError, match="not a folder of the repository"):
        build(GitPackagerConfig(subpath="nope"), str(repo), tmp_path)


def test_git_refuses_uncommitted_changes_and_includes_them_on_request(repo: Path, tmp_path: Path) -> None:
    write_files(repo, {"src/mymod.py": "changed = True\n", "src/new.py": "new\n", "debug.log": "ignored\n", "build/out.txt": "ignored\n"})
    with pytest.raises(ConfigError, match=r"uncommitted changes .*include_uncommitted=true"):
        build(GitPackagerConfig(), str(repo), tmp_path)
    path, _, _ = build(GitPackagerConfig(include_uncommitted=True, subpath="src"), str(repo), tmp_path)
    files = {n for n, m in _members(path).items() if m.isfile()}
    assert files == {"mymod.py", "new.py", "pkg/__init__.py"}
    assert _read(path, "mymod.py") == "changed = True\n"
    whole, _, _ = build(GitPackagerConfig(include_uncommitted=True), str(repo), tmp_path)
    names = set(_members(whole))
    assert "debug.log" not in names and not any(n.startswith("build") for n in names)  # .gitignore honoured


def test_uncommitted_changes_refused_through_the_cli(repo: Path, cli_env: dict[str, str]) -> None:
    (repo / "README.md").write_text("edited\n")
    proc = run_cli(["task=hello", "packager=git", "dryrun=true"], env=cli_env, cwd=str(repo))
    assert proc.returncode == 2
    assert proc.stderr.startswith("nemorun: error: packager=git:") and "README.md" in proc.stderr, proc.stderr
    assert not (Path(cli_env["NEMORUN_HOME"]) / "experiments").exists()  # nothing half-recorded


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not inside a git repository"):
        build(GitPackagerConfig(), str(tmp_path), tmp_path)


def test_archive_is_reproducible(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, sha1, _ = build(GitPackagerConfig(include_uncommitted=True), str(repo), tmp_path / "a")
    os.utime(repo / "README.md", (1_900_000_000, 1_900_000_000))  # mtimes of the sources do not matter
    second, sha2, _ = build(GitPackagerConfig(include_uncommitted=True), str(repo), tmp_path / "b")
    assert sha1 == sha2 and first.read_bytes() == second.read_bytes()
    raw = first.read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # gzip: mtime 0, no file name
    names = [m.name for m in tarfile.open(first, "r:gz").getmembers()]
    assert names == sorted(names)
    for m in tarfile.open(first, "r:gz").getmembers():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (FIXED_MTIME, 0, 0, "", "")
    with gzip.open(first) as gz:
        assert gz.read(512)  # a valid gzip stream


def test_pattern_one_glob_and_a_list(tmp_path: Path) -> None:
    base = tmp_path / "proj"
    write_files(base, {"conf/a.yaml": "a", "conf/deep/b.yaml": "b", "train.py": "t", "notes.txt": "n"})
    path, _, _ = build(PatternPackagerConfig(include_pattern="**/*.yaml", relative_path="proj"), str(tmp_path), tmp_path)
    assert {n for n, m in _members(path).items() if m.isfile()} == {"conf/a.yaml", "conf/deep/b.yaml"}
    path, _, _ = build(PatternPackagerConfig(include_pattern=["*.py", "conf"], relative_path="proj"), str(tmp_path), tmp_path)
    assert {n for n, m in _members(path).items() if m.isfile()} == {"train.py", "conf/a.yaml", "conf/deep/b.yaml"}
    with pytest.raises(ConfigError, match="matches nothing"):
        build(PatternPackagerConfig(include_pattern="*.md", relative_path="proj"), str(tmp_path), tmp_path)
    with pytest.raises(ConfigError, match="stay inside"):
        build(PatternPackagerConfig(include_pattern="../*"), str(base), tmp_path)


def test_hybrid_subfolders_and_root(repo: Path, tmp_path: Path) -> None:
    write_files(tmp_path / "extra", {"README.md": "other\n", "data/x.csv": "1\n"})
    subs = {"code": {"kind": "git", "subpath": "src"}, "extra": {"kind": "pattern", "include_pattern": "data", "relative_path": str(tmp_path / "extra")}}
    path, _, manifest = build(HybridPackagerConfig(sub_packagers=subs), str(repo), tmp_path)
    assert {n for n, m in _members(path).items() if m.isfile()} == {"code/mymod.py", "code/pkg/__init__.py", "extra/data/x.csv"}
    assert set(manifest["sub_packagers"]) == {"code", "extra"}
    path, _, _ = build(HybridPackagerConfig(sub_packagers=subs, extract_at_root=True), str(repo), tmp_path)
    assert {n for n, m in _members(path).items() if m.isfile()} == {"mymod.py", "pkg/__init__.py", "data/x.csv"}


def test_hybrid_conflict_names_both_sources(repo: Path, tmp_path: Path) -> None:
    write_files(tmp_path / "extra", {"README.md": "other\n"})
    subs = {"code": {"kind": "git"}, "docs": {"kind": "pattern", "include_pattern": "*.md", "relative_path": str(tmp_path / "extra")}}
    with pytest.raises(ConfigError, match=r"'README.md' comes from both sub_packagers 'code' and 'docs'"):
        build(HybridPackagerConfig(sub_packagers=subs, extract_at_root=True), str(repo), tmp_path)
    with pytest.raises(ConfigError, match="kind must be one of git, pattern"):
        build(HybridPackagerConfig(sub_packagers={"x": {"kind": "zip"}}), str(repo), tmp_path)
    with pytest.raises(ConfigError, match=r"sub_packagers.x: .*include_pattern"):
        build(HybridPackagerConfig(sub_packagers={"x": {"kind": "pattern"}}), str(repo), tmp_path)


def test_local_job_runs_from_the_unpacked_archive(repo: Path, cli_env: dict[str, str]) -> None:
    """A function task whose module exists only in the repo's src/: it must import and run in
    <job dir>/code, and the record must hold the archive (named by digest) and its sha256."""
    args = ["task=hello", "task.inline=null", "task.target=mymod.where", "+task.params.tag=packed", "packager=git", "packager.subpath=src", "wait=true"]
    proc = run_cli(args, env=cli_env, cwd=str(repo))
    assert proc.returncode == 0, proc.stderr
    (exp,) = (Path(cli_env["NEMORUN_HOME"]) / "experiments" / "hello").iterdir()
    code = json.loads((exp / "code.json").read_text())
    archive = exp / code["archive"]
    assert archive.name == archive_name(code["sha256"]) and hashlib.sha256(archive.read_bytes()).hexdigest() == code["sha256"]
    assert f"packed cwd={exp / 'jobs' / 'hello' / 'code'}" in proc.stdout, proc.stdout
    assert "sha256 " + code["sha256"] in (exp / "jobs" / "hello" / "launch.sh").read_text()
