#!/usr/bin/env python3
"""The benchmark suite, driven by `loadtest/bench-suite` (which builds
everything first). Every scenario runs its baseline in the same run, on this
machine, and prints ratios. Results go to loadtest/results/latest/ (JSON per
run, SVG charts, summary.md), and the summary replaces the section between
the suite markers in loadtest/README.md.

Environment: DURATION (default 10s), CONNS (32), APPS (1000), CERTS (1000),
PAIRS (6), ROUNDS (3: alternating wrk rounds in scenarios c and i),
INSTRUCTIONS (1: scenario g also counts instructions per handshake
under callgrind), ONLY (comma list of scenario letters, e.g. ONLY=a,d). A run with
ONLY replaces just its scenarios' sections of the README and summary.md, and
keeps the other scenarios' results.
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
WASM = os.path.join(ROOT, "target", "wasm", "wasm32-wasip2", "release")
WASMTIME = os.path.join(ROOT, "target", "bench-tools", "bin", "wasmtime")
OUT = os.path.join(ROOT, "loadtest", "results", "latest")
DURATION = os.environ.get("DURATION", "10s")
CONNS = int(os.environ.get("CONNS", "32"))
APPS = int(os.environ.get("APPS", "1000"))
CERTS = int(os.environ.get("CERTS", "1000"))
PAIRS = int(os.environ.get("PAIRS", "6"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
INSTRUCTIONS = os.environ.get("INSTRUCTIONS") == "1"
# Enough that a stray wake-up of the node (a sync poll, the epoch ticker)
# is noise, few enough for a minute under callgrind.
CALLGRIND_REQUESTS = 500
ONLY = set(filter(None, os.environ.get("ONLY", "").split(",")))
TUNED = ("pooling-allocator=y,pooling-memory-keep-resident=4194304,pooling-table-keep-resident=65536,"
         "pooling-async-stack-keep-resident=262144,pooling-decommit-batch-size=64,pooling-pagemap-scan=y")
ENV = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
ENV["EDGE_LOG"] = "warn"

summary = []
tmp = tempfile.mkdtemp(prefix="edge-suite-")


def say(line=""):
    print(line, flush=True)
    summary.append(line)


def wanted(letter):
    return not ONLY or letter in ONLY


class Server:
    """A server process, stopped on exit from the `with` block."""

    def __init__(self, name, argv, ready_url, insecure=False, start_secs=60):
        self.name, self.argv, self.ready_url, self.insecure = name, argv, ready_url, insecure
        self.start_secs = start_secs

    def __enter__(self):
        self.log = open(os.path.join(tmp, re.sub(r"\W+", "-", self.name) + ".log"), "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log, env=ENV)
        deadline = time.time() + self.start_secs
        while True:
            try:
                args = ["curl", "-sf", "-o", "/dev/null", self.ready_url]
                if self.insecure:
                    args.insert(1, "-k")
                if subprocess.run(args, timeout=5).returncode == 0:
                    return self
            except subprocess.TimeoutExpired:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.log.flush()
                self.proc.kill()
                raise SystemExit(f"{self.name} did not come up; see {self.log.name}")
            time.sleep(0.1)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_secs(self):
        """CPU time the process has used, user and system."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            # The fields after the command name, which may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tree_cpu_secs(self):
        """CPU time of the process and its children alive now (nginx's
        workers), user and system."""
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        total = self.cpu_secs()
        for pid in children:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except FileNotFoundError:
                pass
        return total

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def edge_load(label, url, connect=None, h2=False, new_conn=False, insecure=False, warmup=True, name=None,
              measuring=None):
    """One edge-load run; returns its report (also kept as JSON, named
    `name` or after the label). `measuring` is called after the warm-up,
    right before the measured run starts."""
    slug = name or re.sub(r"\W+", "-", label).strip("-").lower()
    path = os.path.join(OUT, slug + ".json")
    argv = [os.path.join(REL, "edge-load"), url, "-c", str(CONNS), "-d", DURATION,
            "--label", label, "--json", path]
    for flag, on in (("--h2", h2), ("--new-conn", new_conn), ("--insecure", insecure)):
        if on:
            argv.append(flag)
    if connect:
        argv += ["--connect", connect]
    if warmup:
        warm = [a if a != DURATION else "2s" for a in argv]
        warm[warm.index("--json") + 1] = os.path.join(tmp, "warm.json")
        subprocess.run(warm, env=ENV, stdout=subprocess.DEVNULL, check=True)
    if measuring:
        measuring()
    subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, check=True)
    with open(path) as f:
        report = json.load(f)
    report["_file"] = path
    return report


def wrk(url):
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    return rps, p99


def wrk_measured(server, url, script=None):
    """One wrk -t1 -cCONNS run against `server`: (req/s, p99, microseconds
    of the server's CPU per request). The CPU figure is what the load
    generator sharing the machine's cores cannot blur: how much of a core
    each answer took."""
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}", "--latency"]
    if script:
        argv += ["-s", script]
    before = server.tree_cpu_secs()
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    cpu = server.tree_cpu_secs() - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p99, cpu * 1e6 / max(requests, 1)


def median_run(runs):
    """The run with the median req/s, and the median CPU per request."""
    by_rps = sorted(runs, key=lambda r: r[0])
    rps, p99, _ = by_rps[len(by_rps) // 2]
    cpus = sorted(r[2] for r in runs)
    return rps, p99, cpus[len(cpus) // 2]


def rounds_table(title, runs):
    """`runs`: name -> [(req/s, p99, us CPU/request)], alternating rounds."""
    say(f"\n| {title} (median of {ROUNDS} alternating rounds) | req/s | p99 | server CPU per request | "
        "all rounds, req/s |\n|---|---:|---:|---:|---|")
    for name, results in runs.items():
        rps, p99, cpu = median_run(results)
        every = ", ".join(f"{r[0]:.0f}" for r in results)
        say(f"| {name} | {rps:.0f} | {p99} | {cpu:.1f} µs | {every} |")


def table(reports, baseline_label=None):
    base = next((r for r in reports if r["label"] == baseline_label), None)
    say("| run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | failures |" + (" vs baseline |" if base else ""))
    say("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if base else ""))
    for r in reports:
        lat = r["latency_ms"]
        failures = sum(n for s, n in r["statuses"].items() if not 200 <= int(s) < 300) + sum(r["errors"].values())
        ratio = f" {r['requests_per_sec'] / base['requests_per_sec']:.2f}x |" if base else ""
        say(f"| {r['label']} | {r['requests_per_sec']:.0f} | {lat['p50']:.3f} | {lat['p90']:.3f} | "
            f"{lat['p99']:.3f} | {lat['p999']:.3f} | {failures} |{ratio}")


def chart(title, reports, name):
    svg = os.path.join(OUT, name + ".svg")
    subprocess.run([os.path.join(REL, "edge-chart"), "--title", title, "-o", svg]
                   + [r["_file"] for r in reports], check=True)
    say(f"\nChart: `results/latest/{name}.svg`")


def node_config(path, https=None, http=None, cert=None, key=None):
    with open(path, "w") as f:
        f.write("[listen]\n")
        if https:
            f.write(f'https = "{https}"\n')
        if http:
            f.write(f'http = "{http}"\n')
        if https:
            f.write(f'[tls]\nsource = "files"\n[[tls.certificates]]\nhosts = ["localhost"]\n'
                    f'cert_path = "{cert}"\nkey_path = "{key}"\ndefault = true\n')
        f.write(f'[[apps]]\nname = "hello"\ntenant = "bench"\nhosts = ["*"]\n'
                f'component = "{WASM}/hello.wasm"\n')


def certificate():
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def scenario_a():
    say("\n### a. hello over plaintext HTTP/1.1\n")
    say(f"edge-load -c{CONNS} -d{DURATION} (closed loop; its CPU shares the 2 cores), and wrk -t1 -c{CONNS} "
        "for the issue's reference figures.\n")
    hello = os.path.join(WASM, "hello.wasm")
    servers = [
        ("native hyper hello (ceiling)", [os.path.join(REL, "native-hello"), "--listen", "127.0.0.1:18941"]),
        ("wasmtime serve (default)", [WASMTIME, "serve", "-S", "cli=y", "--addr", "127.0.0.1:18941", hello]),
        ("wasmtime serve (best-tuned)", [WASMTIME, "serve", "-S", "cli=y", "-O", TUNED, "--addr", "127.0.0.1:18941", hello]),
        ("edge-node serve", [os.path.join(REL, "edge-node"), "serve", hello, "--listen", "127.0.0.1:18941"]),
    ]
    reports, wrk_results = [], {}
    for name, argv in servers:
        if "wasmtime" in name and not os.path.exists(WASMTIME):
            say(f"(skipped {name}: run loadtest/bench-hello once to install wasmtime-cli 48.0.8)")
            continue
        with Server(name, argv, "http://127.0.0.1:18941/"):
            reports.append(edge_load(name, "http://127.0.0.1:18941/"))
            wrk_results[name] = wrk("http://127.0.0.1:18941/")
    table(reports, "wasmtime serve (default)")
    say("\n| wrk -t1 -c32 | req/s | p99 |\n|---|---:|---:|")
    for name, (rps, p99) in wrk_results.items():
        say(f"| {name} | {rps:.0f} | {p99} |")
    edge = wrk_results.get("edge-node serve", (0,))[0]
    say("")
    for name, target in (("wasmtime serve (default)", "target >= 3x"), ("wasmtime serve (best-tuned)", "target >= 1.5x"),
                         ("native hyper hello (ceiling)", "moonshot >= 0.5x")):
        if name in wrk_results:
            say(f"- edge-node / {name} (wrk): **{edge / wrk_results[name][0]:.2f}x** ({target})")
    chart("hello, plaintext HTTP/1.1 (edge-load)", reports, "a-hello-h1")


def scenario_b(cert, key):
    say("\n### b. hello over TLS, HTTP/1.1 and HTTP/2\n")
    say("Baseline: the native hyper hello with TLS (rustls, same client), same protocol.\n")
    cfg = os.path.join(tmp, "tls-node.toml")
    node_config(cfg, https="127.0.0.1:18942", cert=cert, key=key)
    reports = []
    with Server("native hello tls", [os.path.join(REL, "native-hello"), "--listen", "127.0.0.1:18943", "--tls"],
                "https://localhost:18943/", insecure=True):
        for h2 in (False, True):
            proto = "h2" if h2 else "h1"
            reports.append(edge_load(f"native hyper hello, TLS {proto}", "https://localhost:18943/",
                                     connect="127.0.0.1:18943", h2=h2, insecure=True))
    with Server("edge-node tls", [os.path.join(REL, "edge-node"), "--config", cfg], "https://localhost:18942/",
                insecure=True):
        for h2 in (False, True):
            proto = "h2" if h2 else "h1"
            reports.append(edge_load(f"edge-node, TLS {proto}", "https://localhost:18942/",
                                     connect="127.0.0.1:18942", h2=h2, insecure=True))
    table(reports)
    say("")
    for proto in ("h1", "h2"):
        e = next(r for r in reports if r["label"] == f"edge-node, TLS {proto}")
        n = next(r for r in reports if r["label"] == f"native hyper hello, TLS {proto}")
        say(f"- edge-node / native over TLS {proto}: **{e['requests_per_sec'] / n['requests_per_sec']:.2f}x**")
    chart("hello over TLS (edge-load)", reports, "b-hello-tls")


def nginx_conf(nginx_dir, server_block, extra_http="", workers="auto"):
    # As root, nginx's workers would drop to `nobody` and could not write
    # the cache in our private temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write(f"""{user}worker_processes {workers};
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {nginx_dir}/body;
    proxy_temp_path {nginx_dir}/proxy;
    fastcgi_temp_path {nginx_dir}/fastcgi;
    uwsgi_temp_path {nginx_dir}/uwsgi;
    scgi_temp_path {nginx_dir}/scgi;
{extra_http}
    server {{
{server_block}
    }}
}}
""")
    return os.path.join(nginx_dir, "nginx.conf")


def nginx_cache_conf(nginx_dir, listen, origin, levels, workers, limits=""):
    """nginx with `proxy_cache` in front of `origin`, answering `X-Cache`,
    keeping client connections open for 1M requests like the node."""
    os.makedirs(os.path.join(nginx_dir, "cache"), exist_ok=True)
    return nginx_conf(nginx_dir, f"""        listen {listen};
        location / {{
            proxy_pass http://{origin};
            proxy_cache edge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Cache $upstream_cache_status;
        }}""", extra_http=f"    proxy_cache_path {nginx_dir}/cache {levels}keys_zone=edge:10m{limits};\n"
                                "    keepalive_requests 1000000;", workers=workers)


def header_of(url, name):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", url], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


def scenario_c():
    say("\n### c. cache hit: edge-node origin route vs nginx proxy_cache\n")
    say("One origin (native hyper, `Cache-Control: public, max-age=3600`, 21-byte body); edge-node with an "
        "origin route to it and nginx 1.22 with `proxy_cache` in front of it, both warmed and checked to answer "
        f"HIT before measuring (nginx keeps client connections open for 1M requests, like the node, instead of its "
        f"default 1,000); edge-load once each, then wrk -t1 -c{CONNS} (the issue's reference) in {ROUNDS} rounds "
        "alternating between the two servers, both running, reporting the median. Twice: with each server's "
        "default number of workers (one per core: nginx `worker_processes auto`, the node's async runtime), "
        "and with one worker each (nginx `worker_processes 1`, node `runtime.worker_threads = 1`), since the "
        "load generator takes one of the two cores. Besides req/s, the server's CPU time per request "
        "(user + system, all its threads or worker processes, from /proc): on two cores shared with the load "
        "generator, req/s also measures how the three compete for the cores, and CPU per request does not.\n")
    origin = "127.0.0.1:18947"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    reports, rounds = [], {}
    with Server("cache origin", [os.path.join(REL, "native-hello"), "--listen", origin,
                                 "--cache-control", "public, max-age=3600"], f"http://{origin}/"):
        for workers in ("auto", "1"):
            label = "one worker per core" if workers == "auto" else "one worker"
            cfg = os.path.join(tmp, f"cache-node-{workers}.toml")
            with open(cfg, "w") as f:
                f.write(f'[listen]\nhttp = "127.0.0.1:18946"\n[[apps]]\nname = "site"\ntenant = "bench"\n'
                        f'hosts = ["*"]\norigin = "http://{origin}"\n')
                if workers != "auto":
                    f.write(f"[runtime]\nworker_threads = {workers}\n")
            nginx_dir = os.path.join(tmp, f"nginx-cache-{workers}")
            conf = nginx_cache_conf(nginx_dir, "127.0.0.1:18948", origin, "", workers)
            servers = (
                (f"nginx proxy_cache (HIT), {label}", [nginx, "-c", conf, "-e", os.path.join(nginx_dir, "error.log")],
                 "http://127.0.0.1:18948/", "X-Cache"),
                (f"edge-node origin route (HIT), {label}", [os.path.join(REL, "edge-node"), "--config", cfg],
                 "http://127.0.0.1:18946/", "x-cache"),
            )
            with ExitStack() as stack:
                running = []
                for name, argv, url, header in servers:
                    server = stack.enter_context(Server(name, argv, url))
                    for _ in range(3):
                        status = header_of(url, header)
                    if status != "HIT":
                        say(f"(skipped {name}: answered {header}: {status}, not HIT)")
                        continue
                    running.append((name, server, url))
                for name, _, url in running:
                    reports.append(edge_load(name, url))
                for _ in range(ROUNDS):
                    for name, server, url in running:
                        rounds.setdefault(name, []).append(wrk_measured(server, url))
    table(reports, "nginx proxy_cache (HIT), one worker per core")
    rounds_table(f"wrk -t1 -c{CONNS}", rounds)
    say("")
    for label in ("one worker per core", "one worker"):
        edge = rounds.get(f"edge-node origin route (HIT), {label}")
        base = rounds.get(f"nginx proxy_cache (HIT), {label}")
        if edge and base:
            (e_rps, _, e_cpu), (n_rps, _, n_cpu) = median_run(edge), median_run(base)
            say(f"- edge-node / nginx proxy_cache, {label} (wrk, median): **{e_rps / n_rps:.2f}x** req/s "
                f"(target >= 1.2x); **{n_cpu / e_cpu:.2f}x** requests per second of server CPU")
    chart("cache hit, plaintext HTTP/1.1 (edge-load)", reports, "c-cache-hit")


def random_script(objects):
    """A wrk script asking for `url`obj/1 .. obj/N, picked at random for
    every request."""
    script = os.path.join(tmp, f"random-{objects}.lua")
    with open(script, "w") as f:
        f.write(f'math.randomseed(7)\nrequest = function()\n'
                f'  return wrk.format("GET", "/obj/" .. math.random(1, {objects}))\nend\n')
    return script


def header_quick(url, name):
    """`name` of the answer to GET `url` (body read and dropped), without a
    curl process per request: the disk scenario warms thousands of URLs."""
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.headers.get(name)


def scenario_i():
    objects, size, memory = 4096, 32 << 10, 32 << 20
    say("\n### i. cache hit from the disk tier: edge-node vs nginx proxy_cache\n")
    say(f"{objects} distinct objects of {size >> 10} KiB ({objects * size >> 20} MiB, four times the node's "
        f"{memory >> 20} MiB memory tier) from a native origin (`Cache-Control: public, max-age=3600`); edge-node "
        "with an origin route, its memory tier at that size and a disk tier of 1 GiB; nginx 1.22 with "
        "`proxy_cache` (which serves from disk, through the page cache like the node's disk tier). Both warmed "
        f"with every object twice, then wrk -t1 -c{CONNS} picking an object at random for each request, in "
        f"{ROUNDS} rounds alternating between the two servers (both running), median reported, with the "
        "server's CPU time per request. Each server's default workers.\n")
    origin = "127.0.0.1:18957"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    rounds = {}
    with Server("object origin", [os.path.join(REL, "native-hello"), "--listen", origin, "--body-bytes",
                                  str(size), "--cache-control", "public, max-age=3600"], f"http://{origin}/"):
        cfg = os.path.join(tmp, "disk-node.toml")
        disk = os.path.join(tmp, "disk-tier")
        with open(cfg, "w") as f:
            f.write(f'[listen]\nhttp = "127.0.0.1:18956"\n[cache]\ncapacity_bytes = {memory}\n'
                    f'disk_path = "{disk}"\ndisk_capacity_bytes = {1 << 30}\n'
                    f'[[apps]]\nname = "site"\ntenant = "bench"\nhosts = ["*"]\norigin = "http://{origin}"\n')
        nginx_dir = os.path.join(tmp, "nginx-disk")
        conf = nginx_cache_conf(nginx_dir, "127.0.0.1:18958", origin, "levels=1:2 ", "auto", " max_size=1g")
        script = random_script(objects)
        with ExitStack() as stack:
            running = []
            for name, argv, url, header in (
                ("nginx proxy_cache (HIT from disk)", [nginx, "-c", conf, "-e", os.path.join(nginx_dir, "error.log")],
                 "http://127.0.0.1:18958/", "X-Cache"),
                ("edge-node, memory + disk tier", [os.path.join(REL, "edge-node"), "--config", cfg],
                 "http://127.0.0.1:18956/", "x-cache"),
            ):
                server = stack.enter_context(Server(name, argv, url))
                with ThreadPoolExecutor(8) as pool:
                    for _ in range(2):
                        list(pool.map(lambda i: header_quick(f"{url}obj/{i}", header), range(1, objects + 1)))
                    hits = sum(1 for s in pool.map(lambda i: header_quick(f"{url}obj/{i}", header),
                                                   range(1, objects + 1)) if s == "HIT")
                say(f"- {name}: {hits} of {objects} objects answered HIT after warming")
                running.append((name, server, url))
            for _ in range(ROUNDS):
                for name, server, url in running:
                    rounds.setdefault(name, []).append(wrk_measured(server, url, script))
    rounds_table(f"wrk -t1 -c{CONNS}, random object", rounds)
    edge, base = rounds.get("edge-node, memory + disk tier"), rounds.get("nginx proxy_cache (HIT from disk)")
    if edge and base:
        (e_rps, _, e_cpu), (n_rps, _, n_cpu) = median_run(edge), median_run(base)
        say(f"\n- edge-node / nginx proxy_cache, working set 4x the memory tier (wrk, median): "
            f"**{e_rps / n_rps:.2f}x** req/s; **{n_cpu / e_cpu:.2f}x** requests per second of server CPU")


def scenario_j():
    say("\n### j. purge with 1 million responses stored (`cargo bench -p edge-node --bench purge`)\n")
    out = subprocess.run(["cargo", "bench", "-q", "-p", "edge-node", "--bench", "purge"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    say("Baseline in the same run: one walk over a moka cache of the same 1M keys, the loop every purge ran "
        "before the purge index.\n")
    for line in out.splitlines():
        if line.startswith("|") or line.startswith("stored"):
            say(line)


def scenario_d():
    say("\n### d. per-request cost in process (criterion, `cargo bench -p edge-node --bench request`)\n")
    out = subprocess.run(["cargo", "bench", "-q", "-p", "edge-node", "--bench", "request"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    times = {}
    for name, value, unit in re.findall(r"hello/(\w+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out):
        times[name] = float(value) * {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}[unit]
    say("| bench | time per request |\n|---|---:|")
    for name, us in times.items():
        say(f"| {name} | {us:.2f} µs |")
    if "invoke" in times and "dispatch" in times:
        say(f"\n- whole request path / wasmtime instantiate + handle alone: **{times['dispatch'] / times['invoke']:.2f}x**")


def api(base, token, method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read().decode(errors='replace').strip()}") from e


def cp_token(cp_data, *args):
    """A token from `edge-cp token` for the control plane in `cp_data`."""
    return subprocess.run([os.path.join(REL, "edge-cp"), "token", "--data-dir", cp_data] + list(args),
                          capture_output=True, text=True, check=True).stdout.strip()


def cp_public_key(cp_data):
    return subprocess.run([os.path.join(REL, "edge-cp"), "public-key", "--data-dir", cp_data],
                          capture_output=True, text=True, check=True).stdout.strip()


def metric(admin, name):
    with urllib.request.urlopen(f"http://{admin}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def scenario_e():
    say(f"\n### e. many tenants: {APPS} apps on one node\n")
    say("Deployed through the control plane (5 tenants; all apps run hello, so the node loads one artifact). "
        "Baseline: the same node with one app.\n")
    data = os.path.join(tmp, "many")
    cp = [os.path.join(REL, "edge-cp"), "serve", "--data-dir", os.path.join(data, "cp"), "--listen", "127.0.0.1:18950"]
    with Server("edge-cp", cp, "http://127.0.0.1:18950/healthz"):
        def token(*args):
            return cp_token(os.path.join(data, "cp"), *args)
        admin = token("--role", "admin")
        key = cp_public_key(os.path.join(data, "cp"))
        node = [os.path.join(REL, "edge-node"), "--control-plane", "http://127.0.0.1:18950", "--token",
                token("--role", "node", "--sub", "bench-node"), "--trust-key", key, "--data-dir",
                os.path.join(data, "node"), "--listen-http", "127.0.0.1:18951", "--admin", "127.0.0.1:18952"]
        with Server("edge-node (control plane)", node, "http://127.0.0.1:18952/readyz") as n:
            base = "http://127.0.0.1:18950/v1"
            hello = open(os.path.join(WASM, "hello.wasm"), "rb").read()
            tenants = [f"t{i}" for i in range(5)]
            for t in tenants:
                api(base, admin, "POST", "/tenants", {"id": t})
            tokens = {t: token("--role", "tenant", "--tenant", t) for t in tenants}

            def deploy(i):
                t = tenants[i % len(tenants)]
                api(base, tokens[t], "POST", "/apps", {"name": f"app{i}", "hosts": [f"app{i}.bench"]})
                v = api(base, tokens[t], "POST", f"/apps/app{i}/versions", hello, "application/wasm")
                return api(base, tokens[t], "POST", f"/apps/app{i}/deploy", {"version": v["version"]})["revision"]

            def wait_revision(rev):
                while metric("127.0.0.1:18952", "edge_sync_revision") < rev:
                    time.sleep(0.01)

            def first_requests(indices):
                lat = []
                for i in indices:
                    t0 = time.perf_counter()
                    req = urllib.request.Request("http://127.0.0.1:18951/", headers={"host": f"app{i}.bench"})
                    with urllib.request.urlopen(req) as r:
                        assert r.status == 200
                        r.read()
                    lat.append(1000 * (time.perf_counter() - t0))
                return sorted(lat)

            wait_revision(deploy(0))
            rss_one = n.rss_kib()
            first_requests([0] * 50)  # warm
            warm = first_requests([0] * APPS)
            started = time.time()
            rev = 0
            for i in range(1, APPS):
                rev = deploy(i)
            wait_revision(rev)
            deploy_secs = time.time() - started
            rss_many = n.rss_kib()
            first = first_requests(range(APPS))
            pct = lambda xs, p: xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
            say("| | node RSS | request latency p50 | p99 | max |\n|---|---:|---:|---:|---:|")
            say(f"| 1 app (baseline; the same app asked {APPS} times) | {rss_one / 1024:.1f} MiB | "
                f"{pct(warm, 50):.3f} ms | {pct(warm, 99):.3f} ms | {warm[-1]:.3f} ms |")
            say(f"| {APPS} apps (each app's first request) | {rss_many / 1024:.1f} MiB | {pct(first, 50):.3f} ms | "
                f"{pct(first, 99):.3f} ms | {first[-1]:.3f} ms |")
            say(f"\n- RSS per extra app: **{(rss_many - rss_one) / max(APPS - 1, 1):.1f} KiB**; first-request p50 / warm p50: "
                f"**{pct(first, 50) / pct(warm, 50):.2f}x**; {APPS - 1} apps created, uploaded and deployed through the API "
                f"in {deploy_secs:.1f} s (one at a time, each its own revision). Latencies are from a Python client "
                "(one request at a time), so they include its own overhead.")


def scenario_f(cert, key):
    say("\n### f. TLS handshakes per second (a new connection per request)\n")
    say("Same certificate (ECDSA P-256) and client for both; nginx answers with `return 200`.\n")
    cfg = os.path.join(tmp, "tls-node-f.toml")
    node_config(cfg, https="127.0.0.1:18944", cert=cert, key=key)
    nginx_dir = os.path.join(tmp, "nginx")
    os.makedirs(nginx_dir, exist_ok=True)
    nginx_conf(nginx_dir, f"""        listen 127.0.0.1:18945 ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "Hello from the edge!\\n"; }}""")

    reports = []
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with Server("nginx", [nginx, "-c", os.path.join(nginx_dir, "nginx.conf"), "-e", os.path.join(nginx_dir, "error.log")],
                "https://localhost:18945/", insecure=True):
        reports.append(edge_load("nginx, new TLS connection per request", "https://localhost:18945/",
                                 connect="127.0.0.1:18945", new_conn=True, insecure=True))
    with Server("edge-node tls", [os.path.join(REL, "edge-node"), "--config", cfg], "https://localhost:18944/",
                insecure=True):
        reports.append(edge_load("edge-node, new TLS connection per request", "https://localhost:18944/",
                                 connect="127.0.0.1:18944", new_conn=True, insecure=True))
    table(reports, "nginx, new TLS connection per request")
    chart("TLS handshake + one request per connection", reports, "f-handshakes")


def signed_leaves(directory, names):
    """A CA made for this run and one ECDSA P-256 leaf per name signed by it
    (the openssl CLI, which ops/setup --bench installs: one process a leaf,
    as many at once as there are cores). Returns the CA's path and
    {name: (chain_pem, key_pem)}."""
    os.makedirs(directory, exist_ok=True)
    # A config of our own: with the system's, `req -x509` would give every
    # leaf the CA:TRUE of its v3_ca section, which verifiers refuse.
    cnf = os.path.join(directory, "req.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n")
    ca, ca_key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    base = ["openssl", "req", "-config", cnf, "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2"]
    subprocess.run(base + ["-subj", "/CN=edge suite tenant CA", "-addext", "basicConstraints=critical,CA:TRUE",
                           "-addext", "keyUsage=critical,keyCertSign", "-keyout", ca_key, "-out", ca],
                   check=True, capture_output=True)

    def leaf(name):
        cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
        subprocess.run(base + ["-CA", ca, "-CAkey", ca_key, "-subj", f"/CN={name}",
                               "-addext", f"subjectAltName=DNS:{name}",
                               "-addext", "basicConstraints=critical,CA:FALSE",
                               "-addext", "keyUsage=critical,digitalSignature",
                               "-addext", "extendedKeyUsage=serverAuth", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        with open(cert) as c, open(key) as k:
            return name, (c.read(), k.read())

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return ca, dict(pool.map(leaf, names))


def served_leaf(port, name, ca):
    """The leaf 127.0.0.1:`port` sends for SNI `name` (DER), once Python's
    ssl has verified it against `ca` and `name`; None if the handshake or
    the verification fails."""
    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)
    except OSError:  # ssl.SSLError (verification included) is one
        return None


class EdgeStack:
    """`edge-cp serve` and an `edge-node` synced from it, with an HTTPS
    listener whose own certificate (`localhost`, the default for names no
    tenant certificate covers) comes from its config file and the tenants'
    from the control plane. Ports `port` (API), +1 (HTTPS), +2 (admin)."""

    def __init__(self, key, label, port, default_cert, default_key):
        self.key, self.label = key, label
        self.cp_addr, self.https_port, self.admin = f"127.0.0.1:{port}", port + 1, f"127.0.0.1:{port + 2}"
        self.base = f"http://{self.cp_addr}/v1"
        self.dir = os.path.join(tmp, f"certs-{key}")
        self.default_cert, self.default_key = default_cert, default_key

    def __enter__(self):
        self.stack = ExitStack()
        try:
            cp_data = os.path.join(self.dir, "cp")
            self.stack.enter_context(Server(f"edge-cp {self.key}", [
                os.path.join(REL, "edge-cp"), "serve", "--data-dir", cp_data, "--listen", self.cp_addr],
                f"http://{self.cp_addr}/healthz"))
            self.admin_token = cp_token(cp_data, "--role", "admin")
            self.cp_data = cp_data
            cfg = os.path.join(self.dir, "node.toml")
            with open(cfg, "w") as f:
                f.write(f'[listen]\nhttps = "127.0.0.1:{self.https_port}"\nadmin = "{self.admin}"\n'
                        f'[tls]\nsource = "files"\n[[tls.certificates]]\nhosts = ["localhost"]\n'
                        f'cert_path = "{self.default_cert}"\nkey_path = "{self.default_key}"\ndefault = true\n')
            self.node = self.stack.enter_context(Server(f"edge-node {self.key}", [
                os.path.join(REL, "edge-node"), "--config", cfg, "--control-plane", f"http://{self.cp_addr}",
                "--token", cp_token(cp_data, "--role", "node", "--sub", f"bench-node-{self.key}"),
                "--trust-key", cp_public_key(cp_data), "--data-dir", os.path.join(self.dir, "node")],
                f"http://{self.admin}/readyz"))
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)

    def tenants(self, ids):
        for t in ids:
            api(self.base, self.admin_token, "POST", "/tenants", {"id": t})
        return {t: cp_token(self.cp_data, "--role", "tenant", "--tenant", t) for t in ids}

    def cert_series(self):
        """The node's synced certificates (expiry series with a tenant) and
        its applied revision."""
        with urllib.request.urlopen(f"http://{self.admin}/metrics") as r:
            lines = r.read().decode().splitlines()
        certs = sum(1 for line in lines if line.startswith("edge_tls_certificate_expiry_timestamp_seconds{")
                    and 'tenant=""' not in line)
        revision = next((float(line.split()[1]) for line in lines if line.startswith("edge_sync_revision ")), 0.0)
        return certs, revision

    def wait_synced(self, revision, certs):
        deadline = time.time() + 600
        while True:
            have, applied = self.cert_series()
            if have == certs and applied >= revision:
                return
            if time.time() > deadline:
                raise SystemExit(f"edge-node {self.key}: {have} of {certs} certificates at revision {applied} "
                                 f"(want {revision}) after 10 minutes")
            time.sleep(0.05)

    def handshakes_ok(self):
        with urllib.request.urlopen(f"http://{self.admin}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith('edge_tls_handshakes_total{result="ok"}'):
                    return float(line.split()[1])
        return 0.0

    def curl_check(self, host, ca):
        """One request with curl trusting only the run's CA: the node must
        present the tenant's certificate for `host` and answer with hello."""
        out = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve", f"{host}:{self.https_port}:127.0.0.1",
                              "-w", "\n%{http_code}", f"https://{host}:{self.https_port}/"],
                             capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.endswith("\n200") or "Hello" not in out.stdout:
            raise SystemExit(f"edge-node {self.key}: {host} not served with its tenant certificate "
                             f"(curl exit {out.returncode}: {out.stderr.strip() or out.stdout.strip()})")


def https_get(port, host, context):
    """One GET on a new TLS connection to 127.0.0.1:`port` for `host`,
    verified by `context`; True on a 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer.startswith(b"HTTP/1.1 200")


def handshake_instructions(side, ca, last_name, requests):
    """Instructions (user space, callgrind) a node synced from `side`'s
    control plane runs per request, each on a new TLS connection with a
    full handshake, one at a time: counters zeroed once the node serves
    `last_name`'s certificate, dumped after `requests` requests. One worker
    thread and one instance slot, or the pool's address space does not fit
    under valgrind."""
    work = os.path.join(tmp, f"callgrind-{side.key}")
    os.makedirs(work, exist_ok=True)
    https, admin = 18966, "127.0.0.1:18967"
    cfg = os.path.join(work, "node.toml")
    with open(cfg, "w") as f:
        f.write(f'[listen]\nhttps = "127.0.0.1:{https}"\nadmin = "{admin}"\n'
                f'[runtime]\nworker_threads = 1\ninstance_slots = 1\n'
                f'[tls]\nsource = "files"\n[[tls.certificates]]\nhosts = ["localhost"]\n'
                f'cert_path = "{side.default_cert}"\nkey_path = "{side.default_key}"\ndefault = true\n')
    out = os.path.join(work, "callgrind.out")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", os.path.join(REL, "edge-node"),
            "--config", cfg, "--control-plane", f"http://{side.cp_addr}",
            "--token", cp_token(side.cp_data, "--role", "node", "--sub", f"callgrind-{side.key}"),
            "--trust-key", cp_public_key(side.cp_data), "--data-dir", os.path.join(work, "node")]
    context = ssl.create_default_context(cafile=ca)
    with Server(f"edge-node {side.key} under callgrind", argv, f"http://{admin}/healthz", start_secs=600) as node:
        deadline = time.time() + 1200
        while served_leaf(https, last_name, ca) is None:
            if time.time() > deadline:
                raise SystemExit(f"edge-node {side.key} under callgrind: {last_name} not served after 20 minutes")
            time.sleep(1)
        for _ in range(20):  # warm: the component's first instantiation, lazy paths
            https_get(https, "bench.test", context)
        subprocess.run(["callgrind_control", "--zero", str(node.proc.pid)], check=True, capture_output=True)
        for _ in range(requests):
            if not https_get(https, "bench.test", context):
                raise SystemExit(f"edge-node {side.key} under callgrind: a request to bench.test failed")
        subprocess.run(["callgrind_control", "--dump", str(node.proc.pid)], check=True, capture_output=True)
    # The dump asked for is `callgrind.out.1`; `callgrind.out` is the
    # whole run's, written at exit.
    dump = os.path.join(work, "callgrind.out.1")
    total = 0
    if os.path.exists(dump):
        with open(dump) as f:
            total = next((int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:"))), 0)
    if not total:
        raise SystemExit(f"edge-node {side.key} under callgrind: no instruction total in {dump}")
    return total / requests


def scenario_g(cert, key):
    say(f"\n### g. TLS handshakes with {CERTS} tenant certificates loaded against 1\n")
    hello = open(os.path.join(WASM, "hello.wasm"), "rb").read()
    names = ["bench.test"] + [f"t{i:04d}.bench.test" for i in range(1, CERTS)]
    started = time.time()
    ca, leaves = signed_leaves(os.path.join(tmp, "tenant-certs"), names)
    generated_secs = time.time() - started
    print(f"g: {CERTS} leaves made in {generated_secs:.1f} s", flush=True)
    # The control plane allows 200 apps a tenant (MAX_APPS_PER_TENANT).
    tenants = [f"t{i}" for i in range(max(1, -(-CERTS // 200)))]
    for stale in os.listdir(OUT):
        if stale.startswith("g-") and stale.endswith(".json"):
            os.remove(os.path.join(OUT, stale))
    with ExitStack() as stack:
        a = stack.enter_context(EdgeStack("A", "A: 1 certificate", 18960, cert, key))
        b = stack.enter_context(EdgeStack("B", f"B: {CERTS} certificates", 18963, cert, key))
        setup_secs = {}
        for side, count in ((a, 1), (b, CERTS)):
            started = time.time()
            tokens = side.tenants(tenants)
            revision = 0
            for i, name in enumerate(names[:count]):
                token = tokens[tenants[i % len(tenants)]]
                app = "bench" if i == 0 else f"c{i:04d}"
                api(side.base, token, "POST", "/apps", {"name": app, "hosts": [name]})
                if i == 0:
                    v = api(side.base, token, "POST", f"/apps/{app}/versions", hello, "application/wasm")
                    api(side.base, token, "POST", f"/apps/{app}/deploy", {"version": v["version"]})
                chain_pem, key_pem = leaves[name]
                created = api(side.base, token, "POST", f"/apps/{app}/certificates",
                              {"chain_pem": chain_pem, "key_pem": key_pem, "hosts": [name]})
                revision = created["revision"]
            side.wait_synced(revision, count)
            setup_secs[side.key] = time.time() - started
            print(f"g: node {side.key} serves {count} tenant certificates ({setup_secs[side.key]:.1f} s)", flush=True)
        # Each tenant name gets its own leaf (checked by DER against what
        # was uploaded); A has none but bench.test's.
        wrong = [n for n in names if served_leaf(b.https_port, n, ca) != ssl.PEM_cert_to_DER_cert(leaves[n][0])]
        if wrong:
            raise SystemExit(f"edge-node B: {len(wrong)} of {CERTS} names without their own certificate, "
                             f"e.g. {wrong[:3]}")
        if served_leaf(a.https_port, "bench.test", ca) != ssl.PEM_cert_to_DER_cert(leaves["bench.test"][0]):
            raise SystemExit("edge-node A: bench.test not served with its tenant certificate")
        if CERTS > 1 and served_leaf(a.https_port, names[-1], ca) is not None:
            raise SystemExit(f"edge-node A: {names[-1]} verified, but A holds bench.test's certificate only")
        rss_synced = {s.key: s.node.rss_kib() for s in (a, b)}

        runs = []  # (pair, side, report), in the order run
        for pair in range(1, PAIRS + 1):
            # ABBA: each side goes first in every other pair, so a drift of
            # the machine, or an effect of going first, weighs on both alike.
            for side in ((a, b) if pair % 2 else (b, a)):
                side.curl_check("bench.test", ca)
                start = {}

                def measuring(side=side, start=start):
                    start["cpu"], start["handshakes"] = side.node.cpu_secs(), side.handshakes_ok()

                report = edge_load(f"{side.label}, pair {pair}", f"https://bench.test:{side.https_port}/",
                                   connect=f"127.0.0.1:{side.https_port}", new_conn=True, insecure=True,
                                   name=f"g-{side.key.lower()}-{pair}", measuring=measuring)
                handshakes = side.handshakes_ok() - start["handshakes"]
                if handshakes < report["requests"]:
                    raise SystemExit(f"edge-node {side.key}: {handshakes:.0f} handshakes for "
                                     f"{report['requests']} requests: not one connection per request")
                # The node's own CPU per request: what a handshake costs it,
                # whatever share of the cores the load generator took.
                report["node_cpu_us"] = 1e6 * (side.node.cpu_secs() - start["cpu"]) / max(report["requests"], 1)
                runs.append((pair, side.key, report))
                print(f"g: pair {pair}, {side.key}: {report['requests_per_sec']:.0f} req/s, "
                      f"node CPU {report['node_cpu_us']:.0f} µs/request", flush=True)
        rss_after = {s.key: s.node.rss_kib() for s in (a, b)}
        instructions = {}
        if INSTRUCTIONS and shutil.which("valgrind") and shutil.which("callgrind_control"):
            for side, count in ((a, 1), (b, CERTS)):
                instructions[side.key] = handshake_instructions(side, ca, names[count - 1], CALLGRIND_REQUESTS)
                print(f"g: {side.key} under callgrind: {instructions[side.key]:.0f} instructions/request", flush=True)

    say(f"Two control planes, each with a node synced from it (HTTPS listener, its own `localhost` certificate "
        f"as the default): A holds one tenant certificate (`bench.test`, the app running hello), B the same plus "
        f"{CERTS - 1} apps `tNNNN.bench.test` in {len(tenants)} tenant(s), each with its own leaf (ECDSA P-256, all "
        f"signed by a CA made in the run), all uploaded through the API (the {CERTS - 1} apps have no component: "
        f"the runs differ by the certificates alone). Both are measured as scenario f (edge-load -c{CONNS} "
        f"-d{DURATION} --new-conn: a full TLS handshake per request, no resumption) against `bench.test`, in "
        f"{PAIRS} pairs, alternating which side goes first (ABBA). Before each run curl checks, trusting only the "
        f"run's CA, that the node presents bench.test's certificate and answers 200; before the first, every one "
        f"of B's {CERTS} names is checked to get its own leaf; each run's node counted at least one handshake per "
        f"request. Node CPU is the node process's user + system time over the run divided by its requests.\n")
    table([r for _, _, r in runs])
    say("\n| pair | order | A req/s | B req/s | **B/A** | A node CPU µs/req | B node CPU µs/req | B/A |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|")
    ratios, cpu_ratios = [], []
    for pair in range(1, PAIRS + 1):
        by = {side: r for p, side, r in runs if p == pair}
        ratio = by["B"]["requests_per_sec"] / by["A"]["requests_per_sec"]
        cpu_ratio = by["B"]["node_cpu_us"] / by["A"]["node_cpu_us"]
        ratios.append((ratio, pair))
        cpu_ratios.append(cpu_ratio)
        say(f"| {pair} | {'AB' if pair % 2 else 'BA'} | {by['A']['requests_per_sec']:.0f} | "
            f"{by['B']['requests_per_sec']:.0f} | {ratio:.3f} | {by['A']['node_cpu_us']:.0f} | "
            f"{by['B']['node_cpu_us']:.0f} | {cpu_ratio:.3f} |")
    say("\n| node | tenant certificates | RSS once synced | RSS after the runs |\n|---|---:|---:|---:|")
    for s, count in (("A", 1), ("B", CERTS)):
        say(f"| {s} | {count} | {rss_synced[s] / 1024:.1f} MiB | {rss_after[s] / 1024:.1f} MiB |")
    rps = {k: [r["requests_per_sec"] for _, side, r in runs if side == k] for k in ("A", "B")}
    say(f"\n- handshakes/s with {CERTS} certificates / with 1, median of the {PAIRS} pair ratios: "
        f"**{median([r for r, _ in ratios]):.3f}x** (target >= 0.95); median req/s A {median(rps['A']):.0f}, "
        f"B {median(rps['B']):.0f}")
    say(f"- node CPU per handshake, B / A, median of the pairs: **{median(cpu_ratios):.3f}x**")
    if instructions:
        say(f"- instructions per request on the node (callgrind, user space; {CALLGRIND_REQUESTS} requests one "
            f"at a time from Python's ssl, each on a new connection with a full handshake verified against the "
            f"run's CA; one worker thread): A "
            f"{instructions['A']:,.0f}, B {instructions['B']:,.0f}: **B/A {instructions['B'] / instructions['A']:.4f}**")
    elif INSTRUCTIONS:
        say("- (instructions not counted: INSTRUCTIONS=1 needs valgrind, `apt-get install valgrind`)")
    say(f"- RSS per extra certificate (once synced): **{(rss_synced['B'] - rss_synced['A']) / max(CERTS - 1, 1):.1f} "
        f"KiB**")
    say(f"- {CERTS} leaves made with openssl in {generated_secs:.1f} s; B's {CERTS} apps and certificates created, "
        f"uploaded (one at a time, each its own revision) and synced to its node in {setup_secs['B']:.1f} s")
    # The chart shows the pair whose ratio is the median (the upper one of
    # an even number).
    median_pair = sorted(ratios)[len(ratios) // 2][1]
    chart(f"TLS handshake + one request per connection: 1 vs {CERTS} certificates (pair {median_pair})",
          [r for side in ("A", "B") for p, s, r in runs if p == median_pair and s == side], "g-handshakes-certs")


def scenario_h():
    say("\n### h. the cost of a live-log follower: no tail against one tail\n")
    data = os.path.join(tmp, "logs")
    cp_data = os.path.join(data, "cp")
    cp = [os.path.join(REL, "edge-cp"), "serve", "--data-dir", cp_data, "--listen", "127.0.0.1:18970"]
    with Server("edge-cp (logs)", cp, "http://127.0.0.1:18970/healthz"):
        admin = cp_token(cp_data, "--role", "admin")
        node = [os.path.join(REL, "edge-node"), "--control-plane", "http://127.0.0.1:18970", "--token",
                cp_token(cp_data, "--role", "node", "--sub", "bench-node"), "--trust-key", cp_public_key(cp_data),
                "--data-dir", os.path.join(data, "node"), "--listen-http", "127.0.0.1:18971",
                "--admin", "127.0.0.1:18972"]
        with Server("edge-node (logs)", node, "http://127.0.0.1:18972/readyz"):
            base = "http://127.0.0.1:18970/v1"
            api(base, admin, "POST", "/tenants", {"id": "bench"})
            token = cp_token(cp_data, "--role", "tenant", "--tenant", "bench")
            api(base, token, "POST", "/apps", {"name": "flood", "hosts": ["flood.bench"]})
            wasm = open(os.path.join(WASM, "log_flood.wasm"), "rb").read()
            v = api(base, token, "POST", "/apps/flood/versions", wasm, "application/wasm")
            rev = api(base, token, "POST", "/apps/flood/deploy", {"version": v["version"]})["revision"]
            while metric("127.0.0.1:18972", "edge_sync_revision") < rev:
                time.sleep(0.01)
            edgectl_env = dict(ENV, EDGE_API="http://127.0.0.1:18970", EDGE_TOKEN=token)
            shipped = 'edge_log_lines_shipped_total{app="flood",tenant="bench"}'
            dropped = 'edge_log_lines_dropped_total{app="flood",tenant="bench"}'
            runs, followed = [], {}
            for pair in range(1, PAIRS + 1):
                for side in (("A", "B") if pair % 2 else ("B", "A")):
                    follower = None
                    if side == "B":
                        out = open(os.path.join(tmp, f"follower-{pair}.ndjson"), "w")
                        follower = subprocess.Popen([os.path.join(REL, "edgectl"), "logs", "flood", "--follow",
                                                     "--json"], stdout=out, env=edgectl_env)
                        while metric("127.0.0.1:18972", "edge_log_tailed_apps") < 1:
                            time.sleep(0.01)
                    before = (metric("127.0.0.1:18972", shipped), metric("127.0.0.1:18972", dropped))
                    label = f"{'A: no tail' if side == 'A' else 'B: one tail'}, pair {pair}"
                    report = edge_load(label, "http://flood.bench:18971/", connect="127.0.0.1:18971",
                                       name=f"h-{side.lower()}-{pair}")
                    if follower:
                        follower.send_signal(signal.SIGINT)
                        follower.wait(timeout=20)
                        out.close()
                        followed[pair] = (metric("127.0.0.1:18972", shipped) - before[0],
                                          metric("127.0.0.1:18972", dropped) - before[1],
                                          sum(1 for _ in open(out.name)))
                        while metric("127.0.0.1:18972", "edge_log_tailed_apps") > 0:
                            time.sleep(0.01)
                    runs.append((pair, side, report))
                    print(f"h: pair {pair}, {side}: {report['requests_per_sec']:.0f} req/s", flush=True)
    say(f"One control plane and one node synced from it, the app `examples/log-flood` (one stdout line per "
        f"request); edge-load -c{CONNS} -d{DURATION} over keep-alive HTTP/1.1. A: nobody tails the app (the node "
        f"does one hash lookup per request). B: `edgectl logs flood --follow --json` runs throughout, so the node "
        f"ships the app's guest line and access line of every request, within the tenant's rate (200 lines/s, "
        f"burst 1000; the rest counted and sent as drop notices). {PAIRS} pairs, ABBA.\n")
    table([r for _, _, r in runs])
    say("\n| pair | order | A req/s | B req/s | **B/A** | B lines shipped | B lines dropped | objects the follower printed |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for pair in range(1, PAIRS + 1):
        by = {side: r for p, side, r in runs if p == pair}
        ratio = by["B"]["requests_per_sec"] / by["A"]["requests_per_sec"]
        ratios.append((ratio, pair))
        ship, drop, printed = followed[pair]
        say(f"| {pair} | {'AB' if pair % 2 else 'BA'} | {by['A']['requests_per_sec']:.0f} | "
            f"{by['B']['requests_per_sec']:.0f} | {ratio:.3f} | {ship:.0f} | {drop:.0f} | {printed} |")
    say(f"\n- req/s with one follower / with none, median of the {PAIRS} pair ratios: "
        f"**{median([r for r, _ in ratios]):.3f}x** (target >= 0.9)")
    median_pair = sorted(ratios)[len(ratios) // 2][1]
    chart(f"log-flood, one line a request: no tail vs one tail (pair {median_pair})",
          [r for side in ("A", "B") for p, s, r in runs if p == median_pair and s == side], "h-log-follower")


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def splice(block, sections):
    """`block` (a suite summary: a header, then one `### x.` subsection per
    scenario) with each of `sections` (letter -> subsection) replacing the
    subsection of its letter, or inserted in letter order."""
    chunks = re.split(r"(?m)^(?=### )", block)
    keyed = {}
    for chunk in chunks[1:]:
        keyed[re.match(r"### (\w+)\.", chunk).group(1)] = chunk
    keyed.update(sections)
    parts = [chunks[0].strip("\n")] + [keyed[k].strip("\n") for k in sorted(keyed)]
    return "\n\n".join(parts) + "\n"


def main():
    # A run of some scenarios keeps the others' results and replaces only
    # its own sections below.
    if os.path.isdir(OUT) and not ONLY:
        shutil.rmtree(OUT)
    os.makedirs(OUT, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    commit = f"`{head}`" + (" with uncommitted changes" if dirty else "")
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    say(f"Run {when} on {os.cpu_count()} cores (`{os.uname().release}`), server and load generator sharing them; "
        f"commit {commit}; RUST_BACKTRACE unset for every process. Regenerate with `loadtest/bench-suite`.")
    cert, key = certificate()
    scenarios = {"a": scenario_a, "b": lambda: scenario_b(cert, key), "c": scenario_c, "d": scenario_d,
                 "e": scenario_e, "f": lambda: scenario_f(cert, key), "g": lambda: scenario_g(cert, key),
                 "h": scenario_h, "i": scenario_i, "j": scenario_j}
    sections = {}
    for letter, run in scenarios.items():
        if wanted(letter):
            first = len(summary)
            run()
            lines = "\n".join(summary[first:]).strip("\n").split("\n")
            if ONLY:
                # Not the date of the header above it in the README.
                lines[1:1] = ["", f"Run {when} with `ONLY={','.join(sorted(ONLY))} loadtest/bench-suite`, commit "
                              f"{commit}; the other sections are from the run above."]
            sections[letter] = "\n".join(lines)
    text = "\n".join(summary) + "\n"
    summary_md = os.path.join(OUT, "summary.md")
    if ONLY and os.path.exists(summary_md):
        with open(summary_md) as f:
            text = splice(f.read(), sections)
    with open(summary_md, "w") as f:
        f.write(text)
    readme = os.path.join(ROOT, "loadtest", "README.md")
    with open(readme) as f:
        current = f.read()
    begin, end = "<!-- suite:begin -->", "<!-- suite:end -->"
    if begin in current and end in current:
        before, rest = current.split(begin, 1)
        block, tail = rest.split(end, 1)
        block = splice(block, sections) if ONLY else text
        with open(readme, "w") as f:
            f.write(before + begin + "\n" + block + end + tail)
        print(f"\nloadtest/README.md updated; details in {OUT}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(f"suite: {e.cmd[0]} failed: {e.stderr or ''}")
