"""Chapter 7 on Pong: every variant of ``bench/dqn_extensions.py`` on Pong, all at once, as separate processes
sharing one machine (one GPU). Each run is ``bench/dqn_pong.py`` with the variant's switches on chapter 6's Pong
settings (``rainbow``: ``--preset rainbow``), and writes ``results/07_dqn_ext/<variant>_pong.json``::

    python bench/dqn_extensions_pong.py --device cuda                  # the full suite (a GPU)
    python bench/dqn_extensions_pong.py --device cpu --total-steps 3000 \\
        --learning-starts 1000 --log-every 500 --results-suffix _cpu_smoke  # each variant end to end, CPU

The switches follow the old text's Pong runs: 2-step returns for ``nstep`` (its best), the others alone on the
basic settings, and Rainbow as ``DQNConfig.rainbow()`` (3-step). Noisy networks turn epsilon off. C51 keeps
the [-10, 10] support (Pong's clipped rewards). Each process gets ``--threads`` PyTorch threads and one
emulator thread; the exit status is the number of runs that failed, and each run's output goes to
``_build/bench-logs/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: variant -> the options of bench/dqn_pong.py that make it
PONG_VARIANTS: dict[str, list[str]] = {
    "dqn": [],
    "nstep": ["--n-step", "2"],
    "double": ["--double", "true"],
    "noisy": ["--noisy", "true", "--epsilon-start", "0", "--epsilon-end", "0", "--epsilon-decay-steps", "0"],
    "prioritized": ["--prioritized", "true"],
    "dueling": ["--dueling", "true"],
    "c51": ["--categorical", "true"],
    "rainbow": ["--preset", "rainbow"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", choices=list(PONG_VARIANTS), default=list(PONG_VARIANTS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--total-steps", type=int, default=2_000_000)
    p.add_argument("--max-minutes", type=float, default=None, help="per run")
    p.add_argument("--learning-starts", type=int, default=None, help="override (short smoke runs)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10_000, help="steps between progress rows")
    p.add_argument("--results-suffix", default="", help="appended to each results name, e.g. _cpu_smoke")
    args = p.parse_args()
    logs = ROOT / "_build" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for variant in args.variants:
        cmd = [sys.executable, str(ROOT / "bench" / "dqn_pong.py"), "--device", args.device, "--results-folder",
               "07_dqn_ext", "--results-name", f"{variant}_pong{args.results_suffix}", "--metric-prefix",
               f"{variant}_pong", "--total-steps",
               str(args.total_steps), "--threads", str(args.threads), "--seed", str(args.seed), "--quiet",
               "--log-every", str(args.log_every),
               *PONG_VARIANTS[variant]]
        if args.max_minutes is not None:
            cmd += ["--max-minutes", str(args.max_minutes)]
        if args.learning_starts is not None:
            cmd += ["--learning-starts", str(args.learning_starts)]
        log = open(logs / f"{variant}_pong{args.results_suffix}.log", "w")
        procs[variant] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log, time.time())
        print("started", variant, " ".join(cmd[2:]), flush=True)
    failed = 0
    for variant, (proc, log, start) in procs.items():
        code = proc.wait()
        log.close()
        failed += code != 0
        print(f"{variant}: exit {code} after {time.time() - start:.0f} s", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
