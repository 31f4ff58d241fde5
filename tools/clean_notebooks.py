"""Normalise committed notebooks: deterministic execution counts, no timing or widget metadata, no machine paths.

Code cells are numbered 1, 2, 3, ... in order (nbval refuses reference cells that have outputs but
no count, and sequential numbers keep re-runs from producing diffs).

Usage: python tools/clean_notebooks.py book/*.ipynb   (rewrites in place; exits 1 if a machine path
is found in an output, so a leaked path is fixed at its source, not hidden).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

MACHINE_PATH = re.compile(r"(/root/|/work/|/tmp/|/home/\w+/|/opt/|/Users/\w+/)")
DROP_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def clean(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    problems = []
    nb.get("metadata", {}).pop("widgets", None)
    nb["metadata"].pop("vscode", None)
    count = 0
    for cell in nb["cells"]:
        for key in DROP_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell["cell_type"] != "code":
            continue
        count += 1
        cell["execution_count"] = count
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output["execution_count"] = count
            output.get("metadata", {}).pop("widgets", None)
            data = output.get("data", {})
            data.pop("application/vnd.jupyter.widget-view+json", None)
            text = json.dumps(output)
            match = MACHINE_PATH.search(text)
            if match:
                problems.append(f"{path}: output of a cell contains the machine path {match.group(0)!r}")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return problems


def main(paths: list[str]) -> int:
    problems = [p for path in paths for p in clean(Path(path))]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
