#!/usr/bin/env python3
"""How slow this machine's disk is to flush: commits one 200-byte row to a SQLite database in WAL
mode with synchronous = FULL (one fsync each), ten times a second, and prints the latency
percentiles. This is the wait an fsync before every room event would add (docs/benchmarks.md).

usage: python3 scripts/bench-fsync.py [DIR] [COMMITS]   (DIR defaults to target/, on the data disk)
"""
import os
import sqlite3
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target")
commits = int(sys.argv[2]) if len(sys.argv) > 2 else 300
os.makedirs(directory, exist_ok=True)
with tempfile.TemporaryDirectory(dir=directory) as scratch:
    db = sqlite3.connect(os.path.join(scratch, "probe.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body TEXT)")
    latencies = []
    for seq in range(commits):
        start = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO events VALUES (?, ?)", (seq, "x" * 200))
        db.execute("COMMIT")
        latencies.append((time.perf_counter() - start) * 1000)
        time.sleep(0.1)
    db.close()
latencies.sort()
at = lambda p: latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]
print(f"load {open('/proc/loadavg').read().split()[0]}, {commits} commits in {os.path.abspath(directory)}")
print(f"fsync'd commit ms: p50 {at(50):.2f}  p90 {at(90):.2f}  p99 {at(99):.2f}  max {latencies[-1]:.2f}")
