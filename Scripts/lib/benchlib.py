"""Helpers shared by the benchmark scripts (Scripts/bench, Scripts/bench-store)."""
import os
import subprocess
import sys


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build_release(root, products=("warren", "warren-perf")):
    """Builds the products in release; returns their paths, in order."""
    log(f"building release ({', '.join(products)}) ...")
    for product in products:
        subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=root, check=True)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, check=True,
                            capture_output=True, text=True).stdout.strip()
    return [os.path.join(bindir, p) for p in products]


def rss_mb(pid):
    """VmRSS of a process in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0
