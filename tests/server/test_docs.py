"""Every relative link in README.md and docs/ leads somewhere: the file exists, and a
`#fragment` names a heading of that page (GitHub's anchor for it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](src)


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+\s+(.*)$", without_code_blocks(page.read_text()), flags=re.M)
    return {anchor(h) for h in headings}


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def test_the_readme_fits_on_a_screen_or_three():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert "make run" in "\n".join(lines[:15]) and "make test" in "\n".join(lines[:15])


def test_links_are_found():
    assert len(links(REPO / "README.md")) > 10
    found = links(REPO / "docs" / "settings.md")
    assert found == ["pipeline.md#warm-starts", "ray.md", "deployment.md", "ray.md"]


def test_anchor_is_githubs():
    assert anchor("Live channels: `GET /ws`") == "live-channels-get-ws"
    assert anchor("Containment: cgroups, or process groups") == "containment-cgroups-or-process-groups"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto: leave this repo
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, broken


def test_the_pages_link_to_each_other():
    """No page of the manual is an orphan: the README links each one."""
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, orphans
