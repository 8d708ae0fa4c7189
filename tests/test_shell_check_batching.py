"""The batched ``bash -n`` of a sweep parses each DISTINCT script once (scripts that differ only
in their job's name share one parse), never evaluates one, and still pins an error on the exact
job whose script is broken."""
from __future__ import annotations

import pytest

from nemorun import validate
from nemorun.errors import ArtifactError

TEMPLATE = "#!/usr/bin/env bash\n# job {name}.\ncd /home/u/.run/experiments/x/1/jobs/{name}\n{body}\n"


def _run(bodies: list[str], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    parsed: list[int] = []
    real = validate._syntax_errors

    def counting(scripts):  # type: ignore[no-untyped-def]
        parsed.append(len(scripts))
        return real(scripts)

    monkeypatch.setattr(validate, "_syntax_errors", counting)
    with validate.batched_shell_checks() as label:
        for i, body in enumerate(bodies):
            name = f"train-{i:04d}"
            label(f"job {name}", name)
            validate.check_shell_syntax("launch.sh", TEMPLATE.format(name=name, body=body))
    return parsed


def test_scripts_differing_only_in_the_job_name_share_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(["python3 entry.py spec.yaml"] * 500, monkeypatch) == [1]


def test_a_broken_job_among_many_is_named_exactly(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bodies = ["echo ok"] * 300
    bodies[217] = "echo 'unterminated"
    bodies[218] = "}\ntouch pwned\nf() {"  # would run if wrapped and evaluated
    with pytest.raises(ArtifactError, match=r"^job train-0217: launch.sh is not valid bash: "):
        _run(bodies, monkeypatch)


@pytest.mark.parametrize("name", ["fi", "done", "esac"])
def test_names_that_could_be_reserved_words_are_not_normalized(name: str) -> None:
    text = f"if true; then echo {name}; fi\n"
    assert validate._normalized(text, name) == text  # no '-', '.' or digit: left as it is
    assert validate._normalized("cd /jobs/x-1 && echo x-1\n", "x-1") == "cd /jobs/NEMORUNJOBNAME && echo NEMORUNJOBNAME\n"
