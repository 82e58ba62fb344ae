"""Runs tutorial programs as subprocesses and watches their output."""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


class Program:
    """A long-running program (a consumer, a server) whose output lines we can wait for."""

    def __init__(self, node, path, *args, env=None):
        full = os.path.join(SEEDS, path)
        e = node.env()
        e.update(env or {})
        self.name = path
        self.proc = subprocess.Popen(
            [sys.executable, full, *args], cwd=os.path.dirname(full), env=e,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        )
        self.lines = []
        self._q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def _drain(self, timeout):
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is None:
            self._q.put(None)
            return None
        self.lines.append(line)
        return True

    def wait_for(self, pattern, count=1, timeout=30):
        """Waits until `count` output lines match `pattern` (a regex); returns them."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            matches = [l for l in self.lines if rx.search(l)]
            if len(matches) >= count:
                return matches
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"{self.name}: wanted {count} lines matching {pattern!r}, output so far:\n" + "\n".join(self.lines))
            got = self._drain(min(left, 0.2))
            if got is None and self.proc.poll() is not None and not [l for l in self.lines if rx.search(l)][count - 1:]:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}); output:\n" + "\n".join(self.lines))

    def settle(self, seconds=0.5):
        """Collects output for a while (to check nothing more arrives)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self._drain(max(0.0, min(0.05, deadline - time.time())))
        return self.lines

    def matching(self, pattern):
        rx = re.compile(pattern)
        return [l for l in self.lines if rx.search(l)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.settle(0.1)

    def wait_exit(self, timeout=30):
        self.proc.wait(timeout=timeout)
        while self._drain(0.2):
            pass
        return self.proc.returncode


def run(node, path, *args, env=None, timeout=60):
    """Runs a program to completion; returns its output. Fails on a non-zero exit."""
    p = Program(node, path, *args, env=env)
    code = p.wait_exit(timeout)
    out = "\n".join(p.lines)
    assert code == 0, f"{path} {args} exited with {code}:\n{out}"
    return out


class Programs:
    """Starts programs and stops them all at the end of a test."""

    def __init__(self, node):
        self.node = node
        self.started = []

    def start(self, path, *args, env=None):
        p = Program(self.node, path, *args, env=env)
        self.started.append(p)
        return p

    def run(self, path, *args, env=None, timeout=60):
        return run(self.node, path, *args, env=env, timeout=timeout)

    def stop_all(self):
        for p in self.started:
            p.stop()
