"""Start-up time of the CLI: `python -X importtime bench.py --help`, for one or more checkouts.

For each checkout (default: this one) it runs the command `--repeat` times in turns, with
PYTHONDONTWRITEBYTECODE=1 so nothing is written into the checkouts, and prints per checkout the
minimum and median wall time, the minimum cumulative import time of `wsolbench.cli` from
-X importtime, the five slowest top-level imports, and the load average before and after. The
first checkout is the baseline of the printed ratios.

    python benchmarks/startup_time.py [--repeat 5] [CHECKOUT ...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def one_run(checkout: Path) -> tuple[float, dict[str, int]]:
    """Wall seconds and {module: cumulative µs} of the top-level imports (plus wsolbench.cli)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", str(checkout / "bench.py"), "--help"],
                          cwd=checkout, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    cumulative: dict[str, int] = {}
    for match in LINE.finditer(done.stderr):
        depth, name = len(match.group(3)), match.group(4)
        if depth <= 1 or name == "wsolbench.cli":
            cumulative[name] = int(match.group(2))
    return wall, cumulative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    walls: dict[Path, list[float]] = {c: [] for c in args.checkouts}
    imports: dict[Path, list[dict[str, int]]] = {c: [] for c in args.checkouts}
    for checkout in args.checkouts:
        one_run(checkout)  # warm the file cache
    for _ in range(args.repeat):
        for checkout in args.checkouts:
            wall, cumulative = one_run(checkout)
            walls[checkout].append(wall)
            imports[checkout].append(cumulative)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min); "
          f"{args.repeat} runs each, python {sys.version.split()[0]}")
    baseline = min(walls[args.checkouts[0]])
    for checkout in args.checkouts:
        cli = min(run.get("wsolbench.cli", 0) for run in imports[checkout]) / 1e6
        best = min(walls[checkout])
        print(f"\n{checkout}: wall min {best:.2f} s, median {statistics.median(walls[checkout]):.2f} s, "
              f"import wsolbench.cli {cli:.2f} s, wall ratio to first {best / baseline:.2f}")
        slowest = min(imports[checkout], key=lambda run: sum(run.values()))
        for name, micros in sorted(slowest.items(), key=lambda item: -item[1])[:5]:
            print(f"  {micros / 1e6:6.2f} s  {name}")


if __name__ == "__main__":
    main()
