"""Smoke runs of the performance tools: they work and lose nothing. Never a speed threshold:
speed is measured by Scripts/bench, Warren and RabbitMQ side by side (docs/performance.md)."""
import json
import os
import subprocess

from conftest import warren_binary

BIN = os.path.dirname(warren_binary())


def run(args, timeout=120):
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_warren_perf_verify_loses_nothing(warren):
    out = run([os.path.join(BIN, "warren-perf"), "--uri", f"amqp://guest:guest@{warren.host}:{warren.port}/",
               "--duration", "3", "--producers", "2", "--consumers", "2", "--queues", "2", "--confirm", "100",
               "--prefetch", "50", "--multi-ack-every", "10", "--verify", "--quiet", "--size", "64"])
    result = json.loads(out.strip().splitlines()[-1])
    assert result["consumed"] > 0
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["confirmed"] == result["published"], result
    assert result["latency"]["samples"] == result["consumed"]


def test_warren_perf_fanout_counts_every_delivery(warren):
    out = run([os.path.join(BIN, "warren-perf"), "--uri", f"amqp://guest:guest@{warren.host}:{warren.port}/",
               "--duration", "2", "--exchange", "smoke-fanout", "--exchange-type", "fanout", "--queues", "3",
               "--consumers", "3", "--rate", "500", "--auto-ack", "--quiet"])
    result = json.loads(out.strip().splitlines()[-1])
    assert result["published"] > 0
    assert result["consumed"] == 3 * result["published"], result


# Allocations per message today, per build; a change that adds one on the hot path fails here.
# Release: the Message object every queue shares (fanout spreads it over 10 deliveries). The
# unoptimized debug build (what CI runs) allocates more, but just as deterministically.
ALLOCATION_CEILINGS = {
    "release": {"deliver": 1.0, "ack": 1.0, "fanout": 0.1, "confirm": 1.0},
    "debug": {"deliver": 3.0, "ack": 9.0, "fanout": 8.6, "confirm": 5.0},
}


def test_warren_microbench_allocations_stay_under_their_ceilings():
    out = run([os.path.join(BIN, "warren-microbench"), "--messages", "20000", "--json"])
    lines = [json.loads(l) for l in out.strip().splitlines()]
    assert {l["scenario"] for l in lines} == {"deliver", "ack", "fanout", "confirm"}
    for l in lines:
        ceiling = ALLOCATION_CEILINGS[l["build"]][l["scenario"]]
        assert l["allocations_per_message"] <= ceiling + 0.01, (l, ceiling)
