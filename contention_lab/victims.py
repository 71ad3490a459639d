"""Victims: one real latency-sensitive workload per workload profile, each timed per operation.

=====================  ============================================================  ==========
profile                victim                                                        one op
=====================  ============================================================  ==========
latency-critical       ``redis-server`` under an open-loop load of 5 000 GETs/s over    one GET
                       4 connections from ``ka-loadgen`` (``loadgen/``, Go); p50/p99
                       from its JSON (``contention_lab.drivers.RedisVictim``)
cache-sensitive        :func:`cache_walker`: random gathers over a 4 MiB table (the    64 Ki loads
                       size of this machine's L2), NumPy
memory-bandwidth-bound :func:`stream_triad`: STREAM triad ``a = b + s·c`` over 3×64 MiB, one 4 MiB slice
                       arrays, slice after slice (each slice is out of cache again   of each array
                       by the time the walk comes back to it)
io-bound               ``fio`` 4 KiB random reads, ``O_DIRECT``, queue depth 1; p50/p99  one read
                       of completion latency from fio's JSON
batch                  :func:`hash_chunks`: SHA-256 over 8 MiB chunks (CPU-bound)         one chunk
=====================  ============================================================  ==========

The NumPy/hashlib victims run in their own process (``python -m contention_lab.victims
KIND --seconds S``) and print one JSON object: ``ops``, ``seconds``, ``mean_ms``, ``p50_ms``,
``p90_ms``, ``p99_ms``, ``p999_ms``.
Every victim is time-bounded: the in-process ones by their own clock, ka-loadgen and
fio by their ``--seconds`` / ``--runtime``, and all of them by the caller's hard timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

CACHE_TABLE_BYTES = 4 * 1024 * 1024
CACHE_GATHER = 64 * 1024
STREAM_ARRAY_BYTES = 64 * 1024 * 1024
STREAM_SLICE_BYTES = 4 * 1024 * 1024
#: 8 MiB (~9 ms of SHA-256 here): longer than a CFS time slice, so an op's time reflects the CPU
#: share the batch job gets (what a batch job cares about), not whether one slice preempted it.
HASH_CHUNK_BYTES = 8 * 1024 * 1024


def _percentiles(latencies_s: list[float], seconds: float) -> dict:
    lat = np.asarray(latencies_s) * 1000.0
    p50, p90, p99, p999 = np.percentile(lat, [50, 90, 99, 99.9])
    return {
        "ops": int(lat.size),
        "seconds": round(seconds, 3),
        "mean_ms": float(lat.mean()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "p999_ms": float(p999),
    }


def _timed_loop(op, seconds: float) -> dict:
    op()  # warm caches, page in arrays
    latencies = []
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    while True:
        t0 = clock()
        op()
        t1 = clock()
        latencies.append(t1 - t0)
        if t1 >= end:
            break
    return _percentiles(latencies, clock() - start)


def cache_walker(seconds: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 1 << 30, CACHE_TABLE_BYTES // 8, dtype=np.int64)
    index = rng.integers(0, table.size, CACHE_GATHER, dtype=np.int64)
    out = np.empty(CACHE_GATHER, dtype=np.int64)

    def op():
        np.take(table, index, out=out)
        index[:] = (index + out) % table.size  # the next addresses depend on the loaded values

    return _timed_loop(op, seconds)


def stream_triad(seconds: float) -> dict:
    n, k = STREAM_ARRAY_BYTES // 8, STREAM_SLICE_BYTES // 8
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    slices = [slice(i, i + k) for i in range(0, n, k)]
    state = {"i": 0}

    def op():
        s = slices[state["i"]]
        state["i"] = (state["i"] + 1) % len(slices)
        np.multiply(c[s], 3.0, out=a[s])
        np.add(a[s], b[s], out=a[s])

    for _ in slices:  # page in every slice before timing
        op()
    return _timed_loop(op, seconds)


def hash_chunks(seconds: float) -> dict:
    chunk = bytes(range(256)) * (HASH_CHUNK_BYTES // 256)
    return _timed_loop(lambda: hashlib.sha256(chunk).digest(), seconds)


IN_PROCESS = {"cache": cache_walker, "stream": stream_triad, "hash": hash_chunks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one in-process calibration victim and print JSON")
    parser.add_argument("kind", choices=sorted(IN_PROCESS))
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600:
        parser.error(f"--seconds: must be in (0, 600], got {args.seconds}")
    print(json.dumps(IN_PROCESS[args.kind](args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
