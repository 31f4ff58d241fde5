"""The book's repository address: one setting, in ``book/repository.txt``.

    python tools/set_repository.py https://github.com/<org>/rlbook   # set it (and update every chapter)
    python tools/set_repository.py --check                           # fail if a chapter disagrees

The address is used in two places, both derived from that one file:

* ``make book`` reads it as the default of ``RLBOOK_REPO_URL``: with an address, the website gets its
  repository, Binder and Colab buttons; without one (the repository is not public yet) it has none;
* the first code cell of every chapter installs rlbook from it when a reader runs the chapter where the
  package is missing (Colab, a fresh Python). That cell holds the address as a string literal, because
  Colab opens a chapter on its own; this tool writes it there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTING = ROOT / "book" / "repository.txt"
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
MARKER = "# rlbook-install-cell"
LITERAL = re.compile(r'^REPOSITORY = "[^"\n]*"', re.MULTILINE)

INSTALL_CELL = '''{marker}
# Colab, or a Python without the book's package, installs it here (in
# the book's own environment, `make lab`, rlbook is there and this does
# nothing). tools/set_repository.py writes the repository's address
# below.
import importlib.util
import subprocess
import sys

REPOSITORY = "{url}"
if importlib.util.find_spec("rlbook") is None:
    if not REPOSITORY:
        raise RuntimeError("rlbook is not installed, and this copy of the "
                           "chapter does not know the book's repository: "
                           "install rlbook (see the book's introduction)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"rlbook[atari] @ git+{{REPOSITORY}}"], check=True)'''


def read_setting() -> str:
    return SETTING.read_text().strip() if SETTING.exists() else ""


def install_cell_source(url: str) -> str:
    return INSTALL_CELL.format(marker=MARKER, url=url)


def chapter_urls() -> dict[Path, str | None]:
    """Each chapter's address in its install cell (``None``: no install cell)."""
    out = {}
    for path in CHAPTERS:
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(MARKER)]
        match = LITERAL.search("".join(cells[0]["source"])) if cells else None
        out[path] = match.group(0).split('"')[1] if match else None
    return out


def write(url: str) -> None:
    """Store ``url`` as the setting and put it in every chapter's install cell (added after the title)."""
    SETTING.write_text(url + "\n")
    for path in CHAPTERS:
        nb = json.loads(path.read_text())
        source = install_cell_source(url).splitlines(keepends=True)
        cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(MARKER)]
        if cells:
            cells[0]["source"] = source
        else:
            nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "id": "install0",
                                   "metadata": {"tags": ["hide-input"]}, "outputs": [], "source": source})
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="the repository's address (an empty string clears it)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a chapter's install cell disagrees")
    args = parser.parse_args(argv)
    if args.url is not None:
        if args.url and not re.fullmatch(r"https://[\w.-]+/[\w./-]+", args.url):
            parser.error(f"not a repository address: {args.url!r} (expected https://host/owner/name)")
        write(args.url)
    setting = read_setting()
    wrong = {p.name: u for p, u in chapter_urls().items() if u != setting}
    if wrong:
        print(f"chapters whose install cell disagrees with {SETTING.name} ({setting!r}): {wrong}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
