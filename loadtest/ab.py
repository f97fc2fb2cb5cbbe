#!/usr/bin/env python3
"""Interleaved A/B of two node builds, driven by `loadtest/bench-ab`.

Scenario a: `edge-node serve hello.wasm`, wrk -t1 over plaintext HTTP/1.1.
Scenario c: an origin route answering from the cache (HIT), wrk -t1.
Scenario d: `cargo bench -p edge-node --bench request` in each tree.
Each round runs base and head back to back (ABBA order across rounds); a
scenario's figure is the median over rounds of head/base pair ratios.

Environment: ROUNDS (default 3), DURATION (10s), CONNS (32).
"""

import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402  (its Server, wrk and header_of)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
BASE_LABEL, AB = sys.argv[1], sys.argv[2]
ROOT = suite.ROOT
ORIGIN = "127.0.0.1:18957"
trees = {"base": os.path.join(AB, "base-src"), "head": ROOT}
binaries = {name: os.path.join(AB, name, "edge-node") for name in trees}


def wrk_rps(url):
    suite.wrk(url)  # warm-up run, not counted
    return suite.wrk(url)[0]


def scenario_a(which):
    hello = os.path.join(suite.WASM, "hello.wasm")
    argv = [binaries[which], "serve", hello, "--listen", "127.0.0.1:18951"]
    with suite.Server(f"a-{which}", argv, "http://127.0.0.1:18951/"):
        return wrk_rps("http://127.0.0.1:18951/")


def scenario_c(which):
    cfg = os.path.join(suite.tmp, "ab-cache.toml")
    with open(cfg, "w") as f:
        f.write(f'[listen]\nhttp = "127.0.0.1:18956"\n[[apps]]\nname = "site"\ntenant = "bench"\n'
                f'hosts = ["*"]\norigin = "http://{ORIGIN}"\n')
    url = "http://127.0.0.1:18956/"
    with suite.Server(f"c-{which}", [binaries[which], "--config", cfg], url):
        for _ in range(3):
            status = suite.header_of(url, "x-cache")
        if status != "HIT":
            raise SystemExit(f"{which}: the origin route answered x-cache: {status}, not HIT")
        return wrk_rps(url)


def scenario_d(which):
    env = dict(suite.ENV, CARGO_TARGET_DIR=os.path.join(ROOT, "target"))
    out = subprocess.run(["cargo", "bench", "-q", "-p", "edge-node", "--bench", "request"],
                         cwd=trees[which], env=env, capture_output=True, text=True, check=True).stdout
    times = {}
    for name, value, unit in re.findall(r"hello/(\w+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out):
        times[name] = float(value) * {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}[unit]
    return times


def main():
    figures = {}  # (scenario, which) -> [per round]

    def record(key, which, value):
        figures.setdefault((key, which), []).append(value)

    with suite.Server("cache origin", [os.path.join(suite.REL, "native-hello"), "--listen", ORIGIN,
                                       "--cache-control", "public, max-age=3600"], f"http://{ORIGIN}/"):
        for round_no in range(ROUNDS):
            order = ("base", "head") if round_no % 2 == 0 else ("head", "base")
            for which in order:
                started = time.time()
                record("a. hello h1 (req/s)", which, scenario_a(which))
                record("c. cache hit (req/s)", which, scenario_c(which))
                for name, us in scenario_d(which).items():
                    record(f"d. {name} (µs/request)", which, us)
                print(f"round {round_no + 1} {which}: {time.time() - started:.0f}s", flush=True)

    lines = [f"Interleaved A/B, {ROUNDS} rounds (ABBA), wrk -t1 -c{suite.CONNS} -d{suite.DURATION}; "
             f"base `{BASE_LABEL}`, head the work tree at "
             f"`{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}`.",
             "", "| scenario | base (median) | head (median) | head/base (median of pairs) | pairs |",
             "|---|---:|---:|---:|---|"]
    for key in dict.fromkeys(k for k, _ in figures):
        base, head = figures.get((key, "base"), []), figures.get((key, "head"), [])
        pairs = [h / b for b, h in zip(base, head) if b]
        lines.append(f"| {key} | {statistics.median(base):.2f} | {statistics.median(head):.2f} | "
                     f"**{statistics.median(pairs):.3f}** | {', '.join(f'{p:.3f}' for p in pairs)} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(os.path.join(AB, "summary.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
