"""Re-run chapters in full mode in place, clean them, and record each one's wall time.

Usage: RLBOOK_QUICK=0 python tools/run_notebooks.py book/01_mdp.ipynb [...]
The times go to results/book/notebook_times.json (merged with earlier entries), with provenance.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlbook.results import provenance, repo_root  # noqa: E402
from tools.clean_notebooks import clean  # noqa: E402


def run(path: Path, timeout: int = 3600) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(paths: list[str]) -> int:
    if os.environ.get("RLBOOK_QUICK", "0") not in ("", "0"):
        print("refusing to commit quick-mode outputs: run with RLBOOK_QUICK=0", file=sys.stderr)
        return 2
    out = repo_root() / "results" / "book" / "notebook_times.json"
    data = json.loads(out.read_text()) if out.exists() else {"metrics": {}}
    status = 0
    for name in paths:
        path = Path(name)
        print(f"running {path} in full mode ...", flush=True)
        seconds = run(path)
        problems = clean(path)
        for p in problems:
            print(p, file=sys.stderr)
            status = 1
        print(f"  {seconds:.1f} s", flush=True)
        data["metrics"][f"{path.stem}_full_mode_seconds"] = {"unit": "s", "values": [round(seconds, 1)],
                                                             "median": round(seconds, 1), "runs": 1}
    data["provenance"] = provenance(seeds=[], command="make notebooks")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
