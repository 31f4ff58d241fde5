"""Check the built website: every internal link and image must point at a file that exists.

Usage: python tools/check_site.py _build/html
Walks every HTML page, follows each relative href/src (ignoring external URLs, mailto: and data:
URIs) and checks the target file exists and, for links with a #fragment into another page, that the
fragment names an element id there. Exits 1 listing the broken ones; also fails if a chapter page
has no images at all (a chapter without its plots means outputs went missing).
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs and attrs["id"]:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.refs.append(("link", attrs["href"]))
        elif tag in ("img", "script", "source") and attrs.get("src"):
            self.refs.append(("image" if tag == "img" else tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            self.refs.append(("asset", attrs["href"]))
        if tag == "img":
            self.images += 1


def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(errors="replace"))
    return collector


def check(root: Path) -> list[str]:
    if not root.is_dir():
        return [f"{root} does not exist: build the book first (make book)"]
    # _static holds theme templates (unrendered Jinja), not pages
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)
    parsed = {page: _parse(page) for page in pages}
    problems = []
    for page, info in parsed.items():
        rel_page = page.relative_to(root)
        for kind, ref in info.refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith(("//", "mailto:", "data:", "javascript:")):
                continue
            if not parts.path:  # a fragment in the same page
                if parts.fragment and parts.fragment not in info.ids and kind == "link":
                    problems.append(f"{rel_page}: anchor #{parts.fragment} not found on the page")
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel_page}: broken {kind} {ref}")
                continue
            if parts.fragment and target.suffix == ".html" and target in parsed:
                if parts.fragment not in parsed[target].ids:
                    problems.append(f"{rel_page}: {ref}: anchor not found in {target.relative_to(root)}")
    for page, info in parsed.items():
        name = page.name
        if name[:2].isdigit() and name[2] == "_" and info.images == 0:
            problems.append(f"{page.relative_to(root)}: a chapter page without a single image")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "_build/html")
    problems = check(root)
    for p in problems:
        print(p)
    pages = len([p for p in root.rglob("*.html") if "_static" not in p.parts]) if root.is_dir() else 0
    print(f"checked {pages} pages: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
