"""The docs stay true: every config key is documented (the page is the generator's current
output), every relative link resolves, and nothing cites documents a reader does not have."""

from __future__ import annotations

import re
import sys

import pytest
from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_config_page_is_the_generators_current_output() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    import gen_config

    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == gen_config.render(), \
        "docs/config.md is stale: run python docs/gen_config.py"
    text = gen_config.render()
    for _, get, _ in gen_config.SECTIONS:
        for row in gen_config.rows(get()):
            assert row in text


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
