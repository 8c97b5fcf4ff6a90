"""What every peer script of `conceptlens bench` shares (see bench/peers.ts).

A peer prints one JSON line: {name, label, seconds (median), times,
cpu_seconds, warmup, repeats, ...}; when a package it needs is missing it
prints {"skipped": why} and exits 3, so the bench reports it and goes on.
"""
import importlib
import json
import statistics
import sys
import time


def need(*modules):
    """The imported modules, in order; skips the peer (exit 3) when one is missing."""
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as e:
        print(json.dumps({"skipped": f"{e} (for {sys.executable})"}))
        sys.exit(3)


def timed(fn, warmup, repeats):
    """Runs fn() warmup times untimed, then repeats times; (its last result, a row of the timing fields)."""
    times, cpu, out = [], [], None
    for r in range(warmup + repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if r >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return out, {"seconds": statistics.median(times), "times": times, "cpu_seconds": statistics.median(cpu),
                 "warmup": warmup, "repeats": repeats}


def emit(row):
    """Prints the peer's one JSON line."""
    print(json.dumps(row))
