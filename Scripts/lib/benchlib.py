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


class RSSSampler:
    """Samples a process's RSS in the background; `phase(name)` starts a new phase, and
    `peaks()` gives each phase's highest reading (MB)."""

    def __init__(self, pid, interval=0.1):
        import threading
        self.pid, self.interval = pid, interval
        self.current, self.peak, self.last = "start", {}, 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import time
        while not self.done.is_set():
            self.last = rss_mb(self.pid)
            self.peak[self.current] = max(self.peak.get(self.current, 0.0), self.last)
            time.sleep(self.interval)

    def phase(self, name):
        self.current = name

    def stop(self):
        self.done.set()
        self.thread.join()
        return max(self.peak.values() or [0.0])

    def peaks(self):
        return dict(self.peak)
