"""Non-array sweeps on every executor: a bad job is still refused, and the speed-ups change nothing.

Sweeps on kubeflow/skypilot/docker/lepton/dgxcloud render and read back every job's artifacts;
to keep 10,000 jobs within seconds the YAML is dumped by libyaml's emitter where it is
byte-identical to PyYAML's (nemorun.render.to_yaml), read back by libyaml's parser with a direct
constructor (nemorun.validate), and the jobs after the first are held deflated
(nemorun.plan.PackedTexts). These tests pin that none of it lets a bad job through or changes a
byte: the executor list comes from nemorun.targets.TARGET_MODULES, so a new executor fails here
until it has a case. Real CLI runs, no backend: a refused sweep must stop before any record.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorun import render as render_mod
from nemorun.plan import PackedTexts, _Packer
from nemorun.targets import TARGET_MODULES
from nemorun.validate import _yaml_loader, parse_mapping_artifact

from tests.helpers import one_line_error, run_cli

REQUIRED: dict[str, list[str]] = {
    "local": [],
    "slurm": [],
    "docker": ["executor.container_image=python:3.11-slim"],
    "kubeflow": ["executor.image=python:3.11-slim"],
    "skypilot": [],
    "lepton": ["executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim", "executor.node_group_id=ng-1"],
    "dgxcloud": ["executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=ci", "executor.app_secret_env=DGX_APP_SECRET",
                 "executor.project_name=team-a", "executor.container_image=python:3.11-slim"],
}  # fmt: skip

# executor -> (task, the swept key, four values the backend takes, one it refuses, what the refusal says).
# The bad value is job 3 of 5. Where the target reads the job back (docker, kubeflow, lepton,
# dgxcloud, slurm), the refusal comes from that read-back; local and skypilot refuse the value
# in their schema, before rendering.
BAD_JOB: dict[str, tuple[str, str, list[str], str, str]] = {
    "local": ("hello", "executor.retries", ["0", "1", "2", "3"], "-1", "retries must be >= 0"),
    "slurm": ("hello", "task.inline", ["'echo a'", "'echo b'", "'echo c'", "'echo d'"], "'echo e\r\necho f'", "CR LF"),
    "docker": ("train", "executor.shm_size", ["1g", "2g", "512m", "4g"], "1q", "container.json: shm_size='1q'"),
    "kubeflow": ("train", "+executor.env_vars.TOKEN", ["{secret: a, key: k}", "{secret: b, key: k}", "{secret: c, key: k}",
                                                    "{secret: d, key: k}"], "{secret: Not_OK, key: k}",
                 "trainjob.yaml: env TOKEN: secret name 'Not_OK' is not a DNS subdomain"),
    "skypilot": ("train", "executor.cluster_name", ["c1", "c2", "c3", "c4"], "'Bad Name!'", "cluster_name must be a name"),
    "lepton": ("train", "executor.mounts", ["[{mount_path: /a}]", "[{mount_path: /b}]", "[{mount_path: /c}]", "[{mount_path: /d}]"],
               "[{mount_path: /etc}]", "job.json: mount_path '/etc'"),
    "dgxcloud": ("train", "+executor.env_vars.TOKEN", ["{secret: a, key: k}", "{secret: b, key: k}", "{secret: c, key: k}",
                                                    "{secret: d, key: k}"], "{secret: Not_OK, key: k}",
                 "workload.json: environment variable TOKEN: secret name 'Not_OK' is not a Kubernetes name"),
}  # fmt: skip


def _sweep(executor: str, values: list[str]) -> list[str]:
    task, key, _, _, _ = BAD_JOB[executor]
    return ["-m", f"executor={executor}", *REQUIRED[executor], f"task={task}", f"{key}={','.join(values)}"]


def test_every_executor_has_a_bad_job_case() -> None:
    assert set(BAD_JOB) == set(REQUIRED) == set(TARGET_MODULES)


@pytest.mark.parametrize("executor", sorted(TARGET_MODULES))
def test_a_bad_job_in_a_sweep_is_refused_before_anything_is_recorded(executor: str, cli_env: dict[str, str],
                                                                     nemorun_home: Path) -> None:
    _, _, good, bad, message = BAD_JOB[executor]
    env = {**cli_env, "DGX_APP_SECRET": "s3cret"}
    control = run_cli([*_sweep(executor, [*good, good[0]]), "dryrun=true"], env=env)
    assert control.returncode == 0, control.stderr
    assert "sweep of 5 jobs" in control.stdout, control.stdout[:500]
    for extra in (["dryrun=true"], []):  # a dry run, and a real launch: nothing may reach a backend
        proc = run_cli([*_sweep(executor, [*good[:3], bad, good[3]]), *extra], env=env)
        assert message in one_line_error(proc), proc.stderr
        assert "# job " not in proc.stdout  # no artifact shown
        assert not list(nemorun_home.glob("experiments/*/*")), "a refused sweep left a record"


@pytest.mark.parametrize("executor", sorted(set(TARGET_MODULES) - {"local", "slurm"}))
def test_planned_sweep_jobs_hold_exactly_what_a_fresh_render_gives(executor: str, nemorun_home: Path) -> None:
    """Every job's artifacts (packed after the first) equal rendering that job again, byte for
    byte, and are what render_dir writes."""
    from nemorun import compose
    from nemorun.plan import default_site, plan
    from nemorun.targets import target_module

    task, key, good, _, _ = BAD_JOB[executor]
    overrides = [f"executor={executor}", *REQUIRED[executor], f"task={task}", f"{key}={','.join(good)}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGX_APP_SECRET", "s3cret")
        with compose.hydra_context() as loader:
            planned = plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), default_site(), multirun=True)
        assert len(planned.jobs) == 4 and planned.array is None
        assert isinstance(planned.jobs[1].rendered.artifacts, PackedTexts)
        for p in planned.jobs:
            fresh = target_module(executor).render(p.job)
            assert dict(p.rendered.artifacts) == dict(fresh.artifacts)
            assert dict(p.rendered.views) == dict(fresh.views)


# -- the pieces: PackedTexts, to_yaml's libyaml path, the read-back loader ---------------------

texts = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300)


@given(first=st.dictionaries(st.sampled_from(["a.yaml", "b.json", "c"]), texts, min_size=1),
       later=st.dictionaries(st.sampled_from(["a.yaml", "b.json", "d"]), texts))
def test_packed_texts_give_back_every_text_exactly(first: dict[str, str], later: dict[str, str]) -> None:
    from nemorun.ir import Rendered

    pack = _Packer()
    assert pack(Rendered("t", "j0", first, "x")).artifacts is first  # the first is kept as is
    packed = pack(Rendered("t", "j1", later, "x", views=later)).artifacts
    assert isinstance(packed, PackedTexts) and list(packed) == list(later) and len(packed) == len(later)
    assert dict(packed) == later and packed == later
    assert all(name in packed for name in later) and "missing" not in packed
    with pytest.raises(KeyError):
        packed["missing"]


def test_packed_texts_keep_lone_surrogates_and_shrink_alike_texts() -> None:
    ref = "apiVersion: v1\n" + "x: " + "abc" * 1000 + "\n"
    text = ref.replace("v1", "v2") + "\udc80"
    short = "y" * 100
    packed = PackedTexts({"a": text, "b": ref, "c": short}, {"a": (ref, ref.encode()), "b": (ref, ref.encode())})
    assert dict(packed) == {"a": text, "b": ref, "c": short}
    assert len(packed._blobs[0]) < 100  # deflated against the first job's text
    assert packed._blobs[1] is ref and packed._blobs[2] is short  # the first job's own object; short kept as is


_KEY = st.text(alphabet=string.ascii_letters + string.digits + "_./-", min_size=1, max_size=80)
_ANY_KEY = st.one_of(_KEY, st.text(max_size=140))
_LONG = st.builds(lambda line, n, end: "\n".join([line] * n) + end,
                  st.text(alphabet=string.printable, min_size=1, max_size=120), st.integers(1, 200), st.sampled_from(["", "\n", " ", "\n\n"]))
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=60),
                    st.text(max_size=1200), _LONG)
_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_ANY_KEY, inner, max_size=4)),
                      max_leaves=12)


class _PyDumper(yaml.SafeDumper):
    pass


_PyDumper.add_representer(str, render_mod._str_presenter)


@settings(max_examples=400)
@given(value=st.one_of(st.lists(_VALUE, max_size=4), st.dictionaries(_ANY_KEY, _VALUE, max_size=5)))
def test_to_yaml_is_byte_identical_to_pyyaml_and_reads_back_alike(value: object) -> None:
    """The libyaml emitter is used only where it writes PyYAML's bytes (goldens pin the common
    cases; this the corners: long keys, '? ' keys, long quoted lines, '|' blocks); the loader
    gives yaml.safe_load's objects."""
    text = render_mod.to_yaml(value)
    assert text == yaml.dump(value, Dumper=_PyDumper, sort_keys=False, default_flow_style=False, width=10_000)
    assert repr(yaml.load(text, Loader=_yaml_loader())) == repr(yaml.safe_load(text))


@pytest.mark.parametrize("text", [
    "a: &x {b: 1}\nc: *x\n<<: *x\n",          # merge key: PyYAML's constructor
    "a: !!binary aGk=\nb: 2001-12-14\n",      # tags the direct walk does not build
    "x: 1\nx: 2\n",                           # duplicate key: the last wins in both
    "a: &a [1, *a]\n",                        # a recursive alias
    "{1: a, 1.5: b, true: c, null: d, 0x1F: e, .inf: f}\n",
])
def test_read_back_matches_safe_load_on_what_the_walk_hands_over(text: str) -> None:
    assert repr(yaml.load(text, Loader=_yaml_loader())) == repr(yaml.safe_load(text))


@pytest.mark.parametrize("text", ["? [1]\n: 2\n", "a: !custom 1\n", "a: [1\n"])
def test_read_back_refuses_what_safe_load_refuses(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    with pytest.raises(Exception, match="is not valid YAML"):
        parse_mapping_artifact("x.yaml", text, "yaml")


def test_read_back_of_json_is_unchanged() -> None:
    assert parse_mapping_artifact("x.json", json.dumps({"a": [1, 2.5, None]}), "json") == {"a": [1, 2.5, None]}


def test_a_kubeflow_sweep_sends_each_job_exactly_as_recorded(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A real launch against the local Kubernetes contract server (tests/kube_fake.py): every
    job after the first travels packed until it is recorded and sent; the apiserver gets each
    job's own TrainJob and ConfigMap, the same objects as its recorded artifacts."""
    from tests.kube_fake import FakeKube, serving

    with serving(FakeKube(), tmp_path / "kubeconfig", monkeypatch) as fake:
        env = dict(cli_env, KUBECONFIG=str(fake.kubeconfig(tmp_path / "kc")))
        proc = run_cli(["-m", "executor=kubeflow", "executor.image=python:3.11-slim", "task=train", "task.params.lr=1,2,3"], env=env)
        assert proc.returncode == 0, proc.stderr
        sent_jobs, sent_maps = dict(fake.trainjobs), dict(fake.configmaps)
    assert len(sent_jobs) == len(sent_maps) == 3
    assert sorted(json.loads(m["data"][".nemorun..function.yaml"])["params"]["lr"] for m in sent_maps.values()) == [1, 2, 3]
    job_dirs = sorted(nemorun_home.glob("experiments/train/*/jobs/train-*"))
    assert len(job_dirs) == 3
    for job_dir in job_dirs:
        trainjob = yaml.safe_load((job_dir / "trainjob.yaml").read_text())
        configmap = yaml.safe_load((job_dir / "configmap.yaml").read_text())
        ns = trainjob["metadata"]["namespace"]
        assert sent_jobs[ns, trainjob["metadata"]["name"]]["spec"] == trainjob["spec"]
        assert sent_maps[ns, configmap["metadata"]["name"]]["data"] == configmap["data"]
