#!/usr/bin/env python3
"""The benchmark suite, driven by `loadtest/bench-suite` (which builds
everything first). Every scenario runs its baseline in the same run, on this
machine, and prints ratios. Results go to loadtest/results/latest/ (JSON per
run, SVG charts, summary.md), and the summary replaces the section between
the suite markers in loadtest/README.md.

Environment: DURATION (default 10s), CONNS (32), APPS (1000), ONLY (comma
list of scenario letters, e.g. ONLY=a,d).
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
WASM = os.path.join(ROOT, "target", "wasm", "wasm32-wasip2", "release")
WASMTIME = os.path.join(ROOT, "target", "bench-tools", "bin", "wasmtime")
OUT = os.path.join(ROOT, "loadtest", "results", "latest")
DURATION = os.environ.get("DURATION", "10s")
CONNS = int(os.environ.get("CONNS", "32"))
APPS = int(os.environ.get("APPS", "1000"))
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

    def __init__(self, name, argv, ready_url, insecure=False):
        self.name, self.argv, self.ready_url, self.insecure = name, argv, ready_url, insecure

    def __enter__(self):
        self.log = open(os.path.join(tmp, re.sub(r"\W+", "-", self.name) + ".log"), "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log, env=ENV)
        deadline = time.time() + 60
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

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def edge_load(label, url, connect=None, h2=False, new_conn=False, insecure=False, warmup=True):
    """One edge-load run; returns its report (also kept as JSON)."""
    slug = re.sub(r"\W+", "-", label).strip("-").lower()
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
        f"default 1,000); wrk -t1 -c{CONNS} (the issue's reference) and edge-load. Twice: with each server's "
        "default number of workers (one per core: nginx `worker_processes auto`, the node's async runtime), "
        "and with one worker each (nginx `worker_processes 1`, node `runtime.worker_threads = 1`), since the "
        "load generator takes one of the two cores.\n")
    origin = "127.0.0.1:18947"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    reports, wrk_results = [], {}
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
            os.makedirs(os.path.join(nginx_dir, "cache"), exist_ok=True)
            conf = nginx_conf(nginx_dir, f"""        listen 127.0.0.1:18948;
        location / {{
            proxy_pass http://{origin};
            proxy_cache edge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Cache $upstream_cache_status;
        }}""", extra_http=f"    proxy_cache_path {nginx_dir}/cache keys_zone=edge:10m;\n"
                                    "    keepalive_requests 1000000;", workers=workers)
            for name, argv, url, header in (
                (f"nginx proxy_cache (HIT), {label}", [nginx, "-c", conf, "-e", os.path.join(nginx_dir, "error.log")],
                 "http://127.0.0.1:18948/", "X-Cache"),
                (f"edge-node origin route (HIT), {label}", [os.path.join(REL, "edge-node"), "--config", cfg],
                 "http://127.0.0.1:18946/", "x-cache"),
            ):
                with Server(name, argv, url):
                    for _ in range(3):
                        status = header_of(url, header)
                    if status != "HIT":
                        say(f"(skipped {name}: answered {header}: {status}, not HIT)")
                        continue
                    reports.append(edge_load(name, url))
                    wrk_results[name] = wrk(url)
    table(reports, "nginx proxy_cache (HIT), one worker per core")
    say(f"\n| wrk -t1 -c{CONNS} | req/s | p99 |\n|---|---:|---:|")
    for name, (rps, p99) in wrk_results.items():
        say(f"| {name} | {rps:.0f} | {p99} |")
    say("")
    for label in ("one worker per core", "one worker"):
        edge = wrk_results.get(f"edge-node origin route (HIT), {label}")
        nginx_rps = wrk_results.get(f"nginx proxy_cache (HIT), {label}")
        if edge and nginx_rps:
            say(f"- edge-node / nginx proxy_cache, {label} (wrk): **{edge[0] / nginx_rps[0]:.2f}x** (target >= 1.2x)")
    chart("cache hit, plaintext HTTP/1.1 (edge-load)", reports, "c-cache-hit")


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
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


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
            return subprocess.run([os.path.join(REL, "edge-cp"), "token", "--data-dir", os.path.join(data, "cp")]
                                  + list(args), capture_output=True, text=True, check=True).stdout.strip()
        admin = token("--role", "admin")
        key = subprocess.run([os.path.join(REL, "edge-cp"), "public-key", "--data-dir", os.path.join(data, "cp")],
                             capture_output=True, text=True, check=True).stdout.strip()
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


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    say(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"(`{os.uname().release}`), server and load generator sharing them; commit "
        f"`{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}`; "
        f"RUST_BACKTRACE unset for every process. Regenerate with `loadtest/bench-suite`.")
    cert, key = certificate()
    if wanted("a"):
        scenario_a()
    if wanted("b"):
        scenario_b(cert, key)
    if wanted("c"):
        scenario_c()
    if wanted("d"):
        scenario_d()
    if wanted("e"):
        scenario_e()
    if wanted("f"):
        scenario_f(cert, key)
    text = "\n".join(summary) + "\n"
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(text)
    readme = os.path.join(ROOT, "loadtest", "README.md")
    with open(readme) as f:
        current = f.read()
    begin, end = "<!-- suite:begin -->", "<!-- suite:end -->"
    if begin in current and end in current and not ONLY:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(readme, "w") as f:
            f.write(head + begin + "\n" + text + end + tail)
        print(f"\nloadtest/README.md updated; details in {OUT}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(f"suite: {e.cmd[0]} failed: {e.stderr or ''}")
