"""Replays the fuzzing seed corpus and every crasher the fuzzer ever found (Tests/fuzz) through
the codec fuzz target, built normally (Scripts/fuzz builds the libFuzzer version)."""
import os
import subprocess

from conftest import ROOT, warren_binary


def test_corpus_and_crashers_replay_without_a_crash():
    binary = os.path.join(os.path.dirname(warren_binary()), "warren-fuzz")
    dirs = [os.path.join(ROOT, "Tests", "fuzz", d) for d in ("corpus", "crashers")]
    out = subprocess.run([binary, *dirs], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = int(out.stdout.split(": ")[1].split()[0])
    files = sum(len([f for f in os.listdir(d) if not f.startswith(".")]) for d in dirs)
    assert ran >= files and ran > 0, out.stdout
