#!/usr/bin/env python3
"""Every relative link in the user docs resolves.

Checks README.md, CHANGELOG.md and docs/*.md: each relative link (inline `[text](target)`,
image `![alt](target)` or reference definition `[label]: target`) must name a file or directory
that exists, and each `#anchor` must be a heading of the Markdown file it points into, slugged as
GitHub slugs headings (lowercase; punctuation dropped except `-` and `_`; each space a `-`; a
repeated heading gets `-1`, `-2`, ...). Links inside code (fenced blocks, inline code) are not
links and are skipped, and so are absolute URLs (`https:`, `mailto:` ...).

Run from anywhere: `python3 tests/links_test.py`. Exits 1 and lists every broken link
(file:line: target: why), or prints how many links it checked. Standard library only.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    return [f for f in files if f.is_file()]


def lines_outside_code(text: str):
    """(line number, line) for each line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            fence = None


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it, before slugging."""
    text = INLINE_CODE.sub(lambda m: m.group(2), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = re.sub(r"(\*+)(.+?)\1", r"\2", text)  # *emphasis* and **strong**
    text = re.sub(r"(?<![A-Za-z0-9])_{1,2}([^_]+?)_{1,2}(?![A-Za-z0-9])", r"\1", text)
    return text


def slug(text: str) -> str:
    """GitHub's heading slug: lowercase; keep letters, marks, digits, `_`, `-` and spaces; spaces to `-`."""
    kept = []
    for ch in text.lower():
        category = unicodedata.category(ch)
        if ch in "-_ " or category[0] in "LMN" or category == "Pc":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        seen: dict[str, int] = {}
        found: set[str] = set()
        text = path.read_text(encoding="utf-8")
        for _, line in lines_outside_code(text):
            match = HEADING.match(line)
            if match:
                base = slug(heading_text(match.group(2)))
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
            for name in HTML_ANCHOR.findall(line):
                found.add(name)
        cache[path] = found
    return cache[path]


def targets(text: str):
    """(line number, target) for every link in a Markdown text, code excluded."""
    for number, line in lines_outside_code(text):
        definition = REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1)
            continue
        prose = INLINE_CODE.sub("", line)
        for match in INLINE_LINK.finditer(prose):
            yield number, match.group(1)


def check(files: list[Path]) -> tuple[list[str], int]:
    broken: list[str] = []
    checked = 0
    cache: dict[Path, set[str]] = {}
    for source in files:
        text = source.read_text(encoding="utf-8")
        where = source.relative_to(ROOT)
        for number, target in targets(text):
            if SCHEME.match(target) or target.startswith("//"):
                continue  # absolute URL: not ours to check offline
            checked += 1
            path_part, _, anchor = target.partition("#")
            path_part = unquote(path_part)
            if path_part:
                resolved = (source.parent / path_part).resolve()
                if not resolved.exists():
                    broken.append(f"{where}:{number}: {target}: no such file or directory")
                    continue
            else:
                resolved = source
            if not anchor:
                continue
            if resolved.is_dir() or resolved.suffix.lower() != ".md":
                broken.append(f"{where}:{number}: {target}: an anchor into a file that is not Markdown")
                continue
            if unquote(anchor) not in anchors(resolved, cache):
                broken.append(
                    f"{where}:{number}: {target}: no heading with the anchor #{anchor} "
                    f"in {resolved.relative_to(ROOT)}"
                )
    return broken, checked


def main() -> int:
    files = doc_files()
    broken, checked = check(files)
    if broken:
        print(f"{len(broken)} broken link(s) in the docs:", file=sys.stderr)
        for line in broken:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"links: {checked} relative links in {len(files)} files, all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
