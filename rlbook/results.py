"""Results files: what the ``bench/`` scripts measure and the chapters quote.

Every number the book states comes from a JSON file under ``results/`` with this layout::

    {"provenance": {"command": ..., "commit": ..., "date": ...,
                    "seeds": [...], "versions": {...},
                    "hardware": ...},
     "metrics": {"<name>": {"unit": "s", "values": [...],
                            "median": ..., "iqr": [q25, q75],
                            "solved": k, "runs": n}}}

A run that never solved is ``null`` in ``values`` and counts as the budget in the median and
interquartile range, so failures cannot flatter the summary.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The rlbook repository root: the nearest folder upward holding ``results/`` and ``rlbook/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "rlbook").is_dir() and (folder / "results").is_dir():
            return folder
    # Fall back to the source tree this module was imported from (an editable install).
    return Path(__file__).resolve().parents[1]


def summarize(values: Sequence[float | None], budget: float | None = None, unit: str = "") -> dict[str, Any]:
    """Summarise one metric over seeds: median and interquartile range, failures counted as ``budget``.

    ``values`` holds one entry per run; ``None`` (or NaN) marks a run that did not reach the goal.
    Without a ``budget`` failures are left out of the median (use this only for metrics that cannot
    fail, such as a final reward)."""
    clean = [None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v) for v in values]
    solved = [v for v in clean if v is not None]
    if budget is not None:
        filled = [budget if v is None else v for v in clean]
    else:
        filled = solved
    entry: dict[str, Any] = {"unit": unit, "values": clean, "solved": len(solved), "runs": len(clean)}
    if filled:
        entry["median"] = float(np.median(filled))
        entry["iqr"] = [float(np.percentile(filled, 25)), float(np.percentile(filled, 75))]
    else:
        entry["median"] = None
        entry["iqr"] = None
    if budget is not None:
        entry["budget"] = budget
    return entry


def hardware() -> str:
    """A one-line description of this machine (CPU count and model, GPU if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu})"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
        else:
            text += ", no GPU"
    except ImportError:
        pass
    return text


def git_commit(root: Path | None = None) -> str:
    """The current commit (with ``-dirty`` when the tree has uncommitted changes), or ``unknown``."""
    root = root or repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        # results/ itself does not count: a bench run rewrites its own output file
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of Python, rlbook and the main libraries (and of ``extra`` packages if installed)."""
    out = {"python": platform.python_version()}
    for name in ("rlbook", "torch", "numpy", "gymnasium", "ale-py", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance(seeds: Sequence[int], command: str | None = None, extra_versions: Sequence[str] = (),
               **details: Any) -> dict[str, Any]:
    """The provenance block: command line, commit, date, seeds, versions, hardware (and ``details``)."""
    if command is None:
        command = "python " + " ".join(shlex.quote(a) for a in [_relative_script(sys.argv[0]), *sys.argv[1:]])
    return {
        "command": command,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seeds": [int(s) for s in seeds],
        "versions": versions(extra_versions),
        "hardware": hardware(),
        **details,
    }


def results_path(name: str) -> Path:
    """``results/<name>.json`` for a name like ``"04_cem/cem_cartpole"``; ``ValueError`` for a name that is
    empty, absolute, has ``..`` or odd characters, or would land outside ``results/``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a results name is a non-empty string like '04_cem/cem_cartpole', got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or not all(
            all(c.isalnum() or c in "_-." for c in p) for p in parts):
        raise ValueError(f"results name {name!r} must be folder/file names made of letters, digits, '_', '-' and "
                         "'.', separated by '/', with no '..' (it names a file inside results/)")
    folder = (repo_root() / "results").resolve()
    path = (folder / f"{name}.json").resolve()
    if folder not in path.parents:
        raise ValueError(f"results name {name!r} points outside {folder}")
    return path


def write_results(name: str, metrics: dict[str, dict[str, Any]], seeds: Sequence[int],
                  command: str | None = None, extra_versions: Sequence[str] = (), **details: Any) -> Path:
    """Write ``results/<name>.json`` (``name`` like ``"04_cem/cem_cartpole"``) and return its path.

    ``metrics`` maps metric names to :func:`summarize` entries; ``details`` (settings, curves) are
    stored in the provenance block beside the command. The file is strict JSON: a NaN or infinite number
    anywhere is written as ``null`` and listed under ``"nonfinite"`` (its place and what it was), so the
    reason is kept and every JSON reader can load the file."""
    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"provenance": provenance(seeds, command, extra_versions, **details), "metrics": metrics}
    nonfinite: dict[str, str] = {}
    payload = _finite_json(payload, "", nonfinite)
    if nonfinite:
        payload["nonfinite"] = nonfinite
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def merge_results(name: str, entries_key: str, entries: dict[str, Any], metrics: dict[str, dict[str, Any]],
                  owner: Callable[[str], str | None], order: Sequence[str] = (), seeds: Sequence[int] | None = None,
                  derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **details: Any) -> Path:
    """Write ``results/<name>.json`` over its current contents, under a lock, for a benchmark whose parts
    (variants, experiments, agents) may be measured by separate processes.

    ``entries`` (part -> its provenance entry) replace the file's entries of the same parts under
    ``provenance[entries_key]``; ``metrics`` replace every metric that ``owner(metric)`` assigns to one of those
    parts; everything else in the file is kept. Parts are written in the order of ``order`` (others after, in
    the order they come). ``derive(metrics)`` returns metrics computed from the merged set (ratios between
    parts). ``seeds`` defaults to the union of the entries' ``"seeds"``. Returns the path."""
    import fcntl
    import tempfile

    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"rlbook-{name.replace('/', '-')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else {"metrics": {}, "provenance": {}}
        merged_entries = {**old["provenance"].get(entries_key, {}), **entries}
        ordered = {k: merged_entries[k] for k in order if k in merged_entries}
        ordered.update({k: v for k, v in merged_entries.items() if k not in ordered})
        merged = {k: v for k, v in old["metrics"].items() if owner(k) not in entries}
        merged.update(metrics)
        if derive is not None:
            merged.update(derive(merged))
        if seeds is None:
            seeds = sorted({s for entry in ordered.values() for s in entry.get("seeds", [])})
        return write_results(name, dict(sorted(merged.items())), seeds, **{entries_key: ordered}, **details)


def load_results(name: str) -> dict[str, Any]:
    """Read ``results/<name>.json``, as written by :func:`write_results`."""
    path = results_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path}; run the bench script that writes it (see README)")
    return json.loads(path.read_text())


def _finite_json(value: Any, where: str, nonfinite: dict[str, str]) -> Any:
    """``value`` as plain JSON types, with NaN and infinities replaced by ``None`` and recorded in ``nonfinite``."""
    if isinstance(value, dict):
        return {str(k): _finite_json(v, f"{where}.{k}" if where else str(k), nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v, f"{where}[{i}]", nonfinite) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _finite_json(value.tolist(), where, nonfinite)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not np.isfinite(value):
            nonfinite[where] = str(value)  # 'nan', 'inf' or '-inf'
            return None
        return value
    if value is None or isinstance(value, (int, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {where or 'the top'} in a results file")


def _relative_script(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return Path(path).name
