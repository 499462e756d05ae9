"""Every relative link in README.md and docs/*.md resolves: to a file or directory of the repository
and, for ``#anchor`` links, to a heading of the target page (GitHub's anchors)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+\"[^\"]*\"|\s+'[^']*')?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    kept, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * 3
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append((number, line))
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger on the rendered text)."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = INLINE_LINK.sub(lambda m: m.group(1), text)
    text = re.sub(r"<[^>]+>", "", text).replace("*", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the page: a repeated heading gets -1, -2, ..."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _outside_fences(page.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image on the page, outside code."""
    found = []
    for number, line in _outside_fences(page.read_text(encoding="utf-8")):
        prose = CODE_SPAN.sub("code", line)
        targets = [m.group(2) for m in INLINE_LINK.finditer(prose)]
        reference = REFERENCE.match(prose)
        if reference:
            targets.append(reference.group(1))
        found += [(number, t.strip("<>")) for t in targets]
    return found


def broken_links(root: Path = ROOT) -> list[str]:
    problems = []
    anchor_cache: dict[Path, set[str]] = {}
    for page in pages(root):
        where = page.relative_to(root).as_posix()
        for number, target in links(page):
            if EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            path_part = unquote(path_part)
            if path_part.startswith("/"):
                resolved = (root / path_part.lstrip("/")).resolve()
            else:
                resolved = (page.parent / path_part).resolve() if path_part else page
            if root.resolve() not in (resolved, *resolved.parents):
                problems.append(f"{where}:{number}: {target} points outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where}:{number}: {target}: no such file")
                continue
            if not anchor:
                continue
            if resolved.suffix != ".md":
                if not (resolved.is_file() and LINE_ANCHOR.match(anchor)):
                    problems.append(f"{where}:{number}: {target}: an anchor into a file that has no headings")
                continue
            known = anchor_cache.setdefault(resolved, anchors(resolved))
            if unquote(anchor) not in known:
                problems.append(f"{where}:{number}: {target}: no heading with anchor #{anchor} in {resolved.name}")
    return problems


def test_every_relative_link_resolves() -> None:
    problems = broken_links()
    assert not problems, "broken links in the docs:\n" + "\n".join(problems)


def test_the_docs_link_every_docs_page_from_the_readme() -> None:
    readme_targets = {t.partition("#")[0] for _, t in links(ROOT / "README.md")}
    missing = [p.name for p in pages()[1:] if f"docs/{p.name}" not in readme_targets]
    assert not missing, f"README.md does not link: {', '.join(missing)}"


def test_slugs_follow_github() -> None:
    assert slug("The gatekeeper rules (`domain/`)") == "the-gatekeeper-rules-domain"
    assert slug("Queues at a glance: `python -m scripts.status`") == "queues-at-a-glance-python--m-scriptsstatus"
    assert slug("Client → server") == "client--server"
    assert slug("Faults: what people see, and the chaos suite") == "faults-what-people-see-and-the-chaos-suite"
    assert slug("`--from-file events.jsonl`") == "--from-file-eventsjsonl"
    assert slug("Ledger_transactions and **bold** [a link](x.md)") == "ledger_transactions-and-bold-a-link"


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Same\n\n## Same\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "\n".join(
            [
                "[ok](docs/a.md) [ok](docs/a.md#title) [ok](docs/a.md#same-1) [ok](https://example.com/x)",
                "[gone](docs/b.md) [bad anchor](docs/a.md#nope) [out](../elsewhere.md)",
                "`[in code](docs/c.md)`",
                "```",
                "[in a fence](docs/d.md)",
                "```",
                "[ref]: docs/e.md",
            ]
        ),
        encoding="utf-8",
    )
    problems = broken_links(tmp_path)
    assert [p.split(": ", 1)[1].split(":")[0].split(" ")[0] for p in problems] == [
        "docs/b.md",
        "docs/a.md#nope",
        "../elsewhere.md",
        "docs/e.md",
    ], problems
