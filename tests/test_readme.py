"""The README's capability table is the one the targets declare (generated, never hand-edited)."""
from __future__ import annotations

import re

from nemorun.capabilities import markdown_table
from tests.conftest import ROOT


def test_readme_capability_table_matches_the_declarations() -> None:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- capabilities:begin -->\n(.*?)<!-- capabilities:end -->", text, flags=re.S)
    assert m, "README.md lost its capabilities table markers"
    assert m.group(1) == markdown_table(), (
        "README.md's capability table is stale; replace it with nemorun.capabilities.markdown_table()")
