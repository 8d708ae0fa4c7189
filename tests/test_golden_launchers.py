"""Every golden that uses a launcher's rendezvous variables also defines them.

The launchers module hands each target setup lines (``head_node=...``) and a command that uses
them; a target that forgets the lines renders a command that fails on the node with an unset
variable, which no schema notices. This reads every golden artifact as text.
"""
from __future__ import annotations

import re

import pytest

from tests.golden_cases import CASES
from tests.test_golden import GOLDEN

RENDEZVOUS = ("head_node", "head_port", "node_rank")


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendezvous_variables_are_defined_before_use(case: str) -> None:
    for path in sorted((GOLDEN / case).rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text().replace("\\n", "\n")  # scripts embedded in JSON strings
        for var in RENDEZVOUS:
            used = [m.start() for m in re.finditer(rf"\$\{{?{var}\b", text)]
            if not used:
                continue
            defined = [m.start() for m in re.finditer(rf"(?<![\w$]){var}=", text)]
            assert defined and min(defined) < min(used), f"golden/{case}/{path.name} uses ${var} without defining it first"
