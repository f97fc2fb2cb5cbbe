#!/usr/bin/env python3
"""The soak test of issue 18, driven by `loadtest/soak` (which builds
everything, starts a control plane, a node and this file's origin on
127.0.0.1, and creates the apps). Standard library only.

    soak.py origin --listen 127.0.0.1:PORT     # the origin behind the origin route
    soak.py run --seconds N ...                # the load, the samples, the verdict

`run` keeps a mixed load on the node for N seconds (cache hits, misses over
a key space far larger than the cache, Vary variants, revalidations,
uncacheable answers, component requests, new connections), purges through
the control plane's API every PURGE_EVERY seconds and changes the hello
app's active version every DEPLOY_EVERY seconds. Every SAMPLE_EVERY seconds
it records the node's and the control plane's RSS, open fds and threads
(from /proc), the node's gauges from /metrics, and the requests and errors
of the interval, as one CSV row. At the end it compares the last third of
the run with the middle third (the first third is warm-up), writes a chart
(SVG) and a summary table (markdown), and prints the verdict.

Exit status: 0 flat, 2 growing, 1 a failure (the node or the control plane
died, the error rate passed ERROR_RATE_MAX, a purge or deploy failed, a
load generator failed), 130 interrupted.
"""

import argparse
import datetime
import gzip
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_EVERY = float(os.environ.get("SAMPLE_EVERY", "10"))
PURGE_EVERY = float(os.environ.get("PURGE_EVERY", "15"))
DEPLOY_EVERY = float(os.environ.get("DEPLOY_EVERY", "60"))
# Load: RATE_SCALE multiplies every rate below (req/s); the machine has two
# cores shared by the node, the control plane, the origin and the clients.
RATE_SCALE = float(os.environ.get("RATE_SCALE", "1"))
# Verdict tolerances: the last third's median against the middle third's.
RSS_TOLERANCE_PCT = float(os.environ.get("RSS_TOLERANCE_PCT", "5"))
RSS_TOLERANCE_MIB = float(os.environ.get("RSS_TOLERANCE_MIB", "2"))
FDS_TOLERANCE = int(os.environ.get("FDS_TOLERANCE", "10"))
ERROR_RATE_MAX = float(os.environ.get("ERROR_RATE_MAX", "0.001"))

# The origin's key spaces. COLD_KEYS x ~4 KiB (about 2 GB) is ~60x the
# node's 32 MiB cache: the cold traffic keeps missing, storing and evicting
# for the whole run, and the cache's memory has to plateau at its capacity.
HOT_KEYS = 200
COLD_KEYS = 500_000
VARY_KEYS = 1_000
REVAL_KEYS = 100
COMPONENT_KEYS = 20_000
PURGE_CHECK_PATH = "/hot/999999"  # outside HOT_KEYS: only the purger asks for it

LANGUAGES = ["en-US,en;q=0.9", "de-DE,de;q=0.8,en;q=0.5", "fr", "ja", "pt-BR,pt;q=0.9", "es-ES"]
ENCODINGS = [None, "gzip", "br", "gzip, deflate, br", "zstd", "identity", "br;q=1.0, gzip;q=0.8"]

FILLER = (b"The quick brown fox jumps over the lazy dog. " * 400)[:16384]


# ----------------------------------------------------------------------------
# The origin


class Origin(http.server.BaseHTTPRequestHandler):
    """Answers by the path's first segment; every body starts with the path
    (and, under /vary, the Accept-Language it was made for), so the clients
    can tell a response served for the wrong key."""

    protocol_version = "HTTP/1.1"
    server_version = "soak-origin"
    # Head and body go out in one write, and without Nagle: a second small
    # write would otherwise wait for the node's delayed ACK (40 ms a miss).
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # flushed by the server after each request

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.answer(head=False)

    def do_HEAD(self):
        self.answer(head=True)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send(200, b"posted " + self.path.encode() + b"\n", {"cache-control": "no-store"}, False)

    def answer(self, head):
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        kind = parts[0]
        n = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {"content-type": "text/plain; charset=utf-8"}
        size = 2048
        if kind == "hot":
            headers["cache-control"] = "public, max-age=600"
            headers["surrogate-key"] = f"hot hot-{n % 8}"
            headers["etag"] = f'"hot-{n}"'
        elif kind == "cold":
            headers["cache-control"] = "public, max-age=300"
            headers["surrogate-key"] = "cold"
            size = 512 + (n * 7919) % 7680
            if n % 2:
                headers["content-type"] = "application/octet-stream"
        elif kind == "vary":
            headers["cache-control"] = "public, max-age=300"
            headers["vary"] = "Accept-Encoding, Accept-Language"
            headers["surrogate-key"] = "vary"
            headers["content-type"] = "text/html; charset=utf-8"
        elif kind == "short":
            # Stale after 2 s: revalidated, and the validator changes every
            # 30 s, so some revalidations get a new body.
            etag = f'"short-{n}-{int(time.time() // 30)}"'
            headers["cache-control"] = "public, max-age=2"
            headers["etag"] = etag
            if self.headers.get("if-none-match") == etag:
                self.send(304, b"", headers, True)
                return
        elif kind == "swr":
            headers["cache-control"] = "public, max-age=1, stale-while-revalidate=30"
            headers["last-modified"] = "Mon, 01 Dec 2025 00:00:00 GMT"
        elif kind == "private":
            headers["cache-control"] = "private, max-age=60"
        elif kind == "nostore":
            headers["cache-control"] = "no-store"
        else:
            self.send(404, b"not found\n", {"cache-control": "no-store"}, head)
            return
        prefix = path.encode() + b"\n"
        if kind == "vary":
            prefix += b"lang=" + (self.headers.get("accept-language") or "").encode() + b"\n"
        self.send(200, prefix + FILLER[: max(0, size - len(prefix))], headers, head)

    def send(self, status, body, headers, head):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)


def serve_origin(listen):
    host, port = listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Origin)
    server.daemon_threads = True
    server.request_queue_size = 256
    print(f"soak origin: listening on {host}:{port}", flush=True)
    server.serve_forever()


# ----------------------------------------------------------------------------
# Clients

TIMEOUT = 30


class SniHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with an SNI name (http.client sends none for an
    address): the node picks the certificate by SNI."""

    def __init__(self, addr, port, name, context):
        super().__init__(name, port, context=context, timeout=TIMEOUT)
        self.addr = addr

    def connect(self):
        sock = socket.create_connection((self.addr, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


class Target:
    """One of the node's listeners, for one host name."""

    def __init__(self, scheme, port, host):
        self.scheme, self.port, self.host = scheme, port, host

    def connect(self):
        if self.scheme == "https":
            return SniHTTPSConnection("127.0.0.1", self.port, self.host, INSECURE)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)


class Tally:
    """Requests and errors, by traffic class, across the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.errors = {}  # (class, kind) -> n
        self.last_errors = []

    def ok(self, cls):
        with self.lock:
            self.requests[cls] = self.requests.get(cls, 0) + 1

    def error(self, cls, kind, detail=""):
        with self.lock:
            self.requests[cls] = self.requests.get(cls, 0) + 1
            self.errors[(cls, kind)] = self.errors.get((cls, kind), 0) + 1
            self.last_errors = (self.last_errors + [f"{cls}: {kind} {detail}"[:200]])[-10:]

    def totals(self):
        with self.lock:
            return sum(self.requests.values()), sum(self.errors.values())


def decoded(resp_headers, body):
    """The identity bytes of a body, or None for a coding the standard
    library cannot read (br, zstd): those go unchecked."""
    coding = (resp_headers.get("content-encoding") or "").lower()
    if coding in ("", "identity"):
        return body
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)
    return None


class Client:
    """Keeps one connection per target; `get` returns (status, headers, body)
    or raises."""

    def __init__(self):
        self.conns = {}

    def request(self, target, method, path, headers, body=None, new_conn=False):
        key = (target.scheme, target.port, target.host)
        conn = None if new_conn else self.conns.get(key)
        if conn is None:
            conn = target.connect()
        headers = {"host": target.host, **headers}
        if new_conn:
            headers["connection"] = "close"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            self.conns.pop(key, None)
            raise
        if new_conn or resp.will_close:
            conn.close()
            self.conns.pop(key, None)
        else:
            self.conns[key] = conn
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def close(self):
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


class Load:
    """The paced client threads. Each traffic class has a rate (req/s) split
    over its threads; a thread that falls more than a second behind drops
    the backlog instead of bursting."""

    def __init__(self, ports, tally, stop):
        self.http = ports["http"]
        self.https = ports["https"]
        self.tally = tally
        self.stop = stop
        self.site = Target("http", self.http, "site.soak")
        self.site_tls = Target("https", self.https, "site.soak")
        self.cached = Target("http", self.http, "cached.soak")
        self.hello = Target("http", self.http, "hello.soak")
        self.hello_tls = Target("https", self.https, "hello.soak")

    # Each returns (class, target, method, path, headers, body, check, new_conn);
    # check(status, headers, body) returns an error kind or None.

    def hot(self, rng):
        # Hits: a small set of URLs over HTTPS, in several encodings (the
        # first hit in each builds a compressed copy), a few ranges.
        n = min(int(rng.expovariate(1 / 30)), HOT_KEYS - 1)
        path = f"/hot/{n}"
        headers = {}
        enc = rng.choice(ENCODINGS)
        if enc:
            headers["accept-encoding"] = enc
        if rng.random() < 0.05:
            headers = {"range": "bytes=0-99"}
        return "hot", self.site_tls, "GET", path, headers, None, prefix_check(path), False

    def cold(self, rng):
        # Misses: a key space ~60x the cache.
        path = f"/cold/{rng.randrange(COLD_KEYS)}"
        return "cold", self.site, "GET", path, {}, None, prefix_check(path), False

    def vary(self, rng):
        path = f"/vary/{rng.randrange(VARY_KEYS)}"
        lang = rng.choice(LANGUAGES)
        headers = {"accept-language": lang}
        enc = rng.choice(ENCODINGS)
        if enc:
            headers["accept-encoding"] = enc
        want = f"{path}\nlang={lang}\n".encode()
        return "vary", self.site, "GET", path, headers, None, prefix_check(path, want), False

    def reval(self, rng):
        kind = rng.choice(["short", "swr"])
        path = f"/{kind}/{rng.randrange(REVAL_KEYS)}"
        return "reval", self.site, "GET", path, {}, None, prefix_check(path), False

    def bypass(self, rng):
        r = rng.random()
        if r < 0.1:
            # An unsafe method: passed through, and invalidates the URL
            # (over HTTPS, as the hot class asks for it).
            path = f"/hot/{rng.randrange(HOT_KEYS)}"
            return "bypass", self.site_tls, "POST", path, {"content-type": "text/plain"}, b"x" * 64, None, False
        kind = "private" if r < 0.55 else "nostore"
        path = f"/{kind}/{rng.randrange(1000)}"
        return "bypass", self.site, "GET", path, {}, None, prefix_check(path), False

    def component(self, rng):
        # The cacheable component: its answers carry the caching headers the
        # query names (Vary on Accept-Language, surrogate keys).
        n = rng.randrange(COMPONENT_KEYS)
        path = f"/c/{n}"
        query = f"?cc=public%2C%20max-age%3D120&vary=accept-language&sk=comp+comp-{n % 4}"
        headers = {"accept-language": rng.choice(LANGUAGES)}
        want = f"GET {path} ".encode()
        return "component", self.cached, "GET", path + query, headers, None, prefix_check(None, want), False

    def churn(self, rng):
        # A new connection (and, half the time, a TLS handshake) per request.
        target = rng.choice([self.hello, self.hello_tls, self.site, self.site_tls])
        if target.host == "hello.soak":
            return "churn", target, "GET", "/", {}, None, hello_check, True
        path = f"/hot/{rng.randrange(HOT_KEYS)}"
        return "churn", target, "GET", path, {}, None, prefix_check(path), True

    def classes(self):
        s = RATE_SCALE
        # (generator, threads, total req/s)
        return [
            (self.hot, 1, 60 * s),
            (self.cold, 2, 100 * s),
            (self.vary, 1, 60 * s),
            (self.reval, 1, 30 * s),
            (self.bypass, 1, 20 * s),
            (self.component, 1, 40 * s),
            (self.churn, 1, 10 * s),
        ]

    def start(self):
        threads = []
        for gen, count, rate in self.classes():
            for i in range(count):
                t = threading.Thread(target=self.run, args=(gen, rate / count, i), daemon=True)
                t.start()
                threads.append(t)
        return threads

    def run(self, gen, rate, seed):
        rng = random.Random(f"{gen.__name__}-{seed}")
        client = Client()
        interval = 1.0 / rate
        due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if due > now and self.stop.wait(due - now):
                break
            due += interval
            if time.monotonic() - due > 1.0:
                due = time.monotonic()
            cls, target, method, path, headers, body, check, new_conn = gen(rng)
            try:
                status, resp_headers, data = client.request(target, method, path, headers, body, new_conn)
            except Exception as e:  # noqa: BLE001 - every failure is counted by its kind
                if self.stop.is_set():
                    break
                self.tally.error(cls, type(e).__name__, f"{target.host}{path}: {e}")
                continue
            if not (200 <= status < 300 or status == 304):
                self.tally.error(cls, f"status-{status}", f"{target.host}{path}")
                continue
            problem = check(status, resp_headers, data) if check else None
            if problem:
                self.tally.error(cls, problem, f"{target.host}{path} x-cache={resp_headers.get('x-cache')}")
            else:
                self.tally.ok(cls)
        client.close()


def prefix_check(path, want=None):
    want = want if want is not None else (path + "\n").encode()

    def check(status, headers, body):
        if status == 304:
            return None
        if status == 206:
            return None if body.startswith(want) or want.startswith(body) else "wrong-body"
        try:
            plain = decoded(headers, body)
        except Exception:  # noqa: BLE001
            return "bad-encoding"
        if plain is None:
            return None
        return None if plain.startswith(want) else "wrong-body"

    return check


def hello_check(status, headers, body):
    return None if body.startswith(b"Hello") else "wrong-body"


# ----------------------------------------------------------------------------
# The control plane: purges and deploys


class Api:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, content_type="application/json", timeout=120):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')[:300]}") from None
        return json.loads(text) if text else None


def scrape(port):
    """Prometheus text: {name: [(labels, value)]}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            out.setdefault(m.group(1), []).append((m.group(2) or "", value))
    return out


def total(metrics, name, label_match=None):
    return sum(v for labels, v in metrics.get(name, []) if label_match is None or label_match in labels)


class Aborted(Exception):
    """The run ends early (a process died, or Ctrl-C): what was in flight is
    neither a success nor a failure."""


class Ops:
    """Purges every PURGE_EVERY s and version changes every DEPLOY_EVERY s,
    each waited for until the node applied its revision. At the end of the
    run (`stop`) the one in flight finishes; `abort` drops it."""

    def __init__(self, api, node_admin, hello_wasm, stop, abort, log):
        self.api = api
        self.node_admin = node_admin
        self.hello = open(hello_wasm, "rb").read()
        self.stop = stop
        self.abort = abort
        self.log = log
        self.lock = threading.Lock()
        self.counts = {"purges_ok": 0, "purges_failed": 0, "deploys_ok": 0, "deploys_failed": 0}
        self.failures = []
        self.purge_ms = []
        self.deploy_ms = []
        self.versions = []  # uploaded versions of hello, oldest first
        self.http_port = None

    def record(self, what, ok, detail, ms=None):
        with self.lock:
            self.counts[f"{what}s_{'ok' if ok else 'failed'}"] += 1
            if ok and ms is not None:
                (self.purge_ms if what == "purge" else self.deploy_ms).append(ms)
            if not ok:
                self.failures.append(detail)
        if not ok:
            self.log(f"!! {what} failed: {detail}")

    def wait_applied(self, revision, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if total(scrape(self.node_admin), "edge_sync_revision") >= revision:
                    return True
            except OSError:
                pass
            if self.abort.wait(0.02):
                raise Aborted()
        return False

    # --- purges

    def site_get(self, client, path):
        status, headers, _ = client.request(Target("http", self.http_port, "site.soak"), "GET", path, {})
        return status, headers.get("x-cache")

    def purge(self, i, rng):
        rotation = [
            ("site", {"url": PURGE_CHECK_PATH}),  # checked: a HIT before, a miss after
            ("site", {"key": f"hot-{rng.randrange(8)}"}),
            ("cached", {"all": True, "soft": True}),
            ("site", {"url": f"/vary/{rng.randrange(VARY_KEYS)}"}),
            ("site", {"all": True, "soft": True}),
            ("site", {"key": "cold"}),
            ("cached", {"key": f"comp-{rng.randrange(4)}"}),
            ("site", {"key": "vary", "soft": True}),
        ]
        app, body = rotation[i % len(rotation)]
        what = f"purge {app} {json.dumps(body, separators=(',', ':'))}"
        client = Client()
        try:
            checked = "url" in body and body["url"] == PURGE_CHECK_PATH
            if checked:
                for _ in range(20):
                    if self.site_get(client, PURGE_CHECK_PATH) == (200, "HIT"):
                        break
                else:
                    raise RuntimeError(f"{PURGE_CHECK_PATH} never answered HIT before the purge")
            t0 = time.perf_counter()
            answer = self.api.call("POST", f"/v1/apps/{app}/purge", body)
            if not self.wait_applied(answer["revision"]):
                raise RuntimeError(f"the node did not apply revision {answer['revision']} within 60 s")
            ms = 1000 * (time.perf_counter() - t0)
            if checked:
                status, cache = self.site_get(client, PURGE_CHECK_PATH)
                if status != 200 or cache == "HIT":
                    raise RuntimeError(f"after the purge {PURGE_CHECK_PATH} answered {status} x-cache {cache}")
            self.record("purge", True, what, ms)
        except Aborted:
            pass
        except Exception as e:  # noqa: BLE001
            self.record("purge", False, f"{what}: {e}")
        finally:
            client.close()

    # --- deploys

    def variant(self, i):
        # A custom section at the end: the same code, new bytes, so the
        # control plane validates and compiles every upload afresh.
        def leb(n):
            out = bytearray()
            while True:
                b, n = n & 0x7F, n >> 7
                out.append(b | (0x80 if n else 0))
                if not n:
                    return bytes(out)

        name = b"soak"
        payload = leb(len(name)) + name + f"{i}-{time.time_ns()}".encode()
        return self.hello + b"\x00" + leb(len(payload)) + payload

    def deploy(self, i):
        step = i % 3
        client = Client()
        try:
            t0 = time.perf_counter()
            if step == 0 or not self.versions:
                up = self.api.call("POST", "/v1/apps/hello/versions", self.variant(i), "application/wasm")
                self.versions.append(up["version"])
                answer = self.api.call("POST", "/v1/apps/hello/deploy", {"version": up["version"]})
                what = f"upload + activate version {up['version']}"
            elif step == 1:
                answer = self.api.call("POST", "/v1/apps/hello/rollback", {})
                what = f"rollback to version {answer['version']}"
            else:
                answer = self.api.call("POST", "/v1/apps/hello/deploy", {"version": self.versions[-1]})
                what = f"activate version {self.versions[-1]}"
            if not self.wait_applied(answer["revision"]):
                raise RuntimeError(f"{what}: the node did not apply revision {answer['revision']} within 60 s")
            ms = 1000 * (time.perf_counter() - t0)
            status = self.api.call("GET", "/v1/apps/hello/status")
            if status.get("active_version") != answer["version"]:
                raise RuntimeError(f"{what}: status shows version {status.get('active_version')}")
            bad = [n for n in status.get("nodes", []) if n.get("state") != "applied" or n.get("refused")]
            if bad:
                raise RuntimeError(f"{what}: rollout {bad}")
            code, _, data = client.request(Target("http", self.http_port, "hello.soak"), "GET", "/", {})
            if code != 200 or not data.startswith(b"Hello"):
                raise RuntimeError(f"{what}: hello answered {code} {data[:60]!r}")
            if step == 0:
                self.prune(answer["version"])
            self.record("deploy", True, what, ms)
        except Aborted:
            pass
        except Exception as e:  # noqa: BLE001
            self.record("deploy", False, f"deploy step {step}: {e}")
        finally:
            client.close()

    def prune(self, active):
        # Keep the newest three uploads (and the active version): old
        # versions are deleted, so their blobs are collected and an app
        # never reaches the 100-version limit however long the soak.
        listed = self.api.call("GET", "/v1/apps/hello/versions")["versions"]
        keep = set(self.versions[-3:]) | {active}
        for v in sorted(x["version"] for x in listed):
            if v not in keep and v < max(keep):
                self.api.call("DELETE", f"/v1/apps/hello/versions/{v}")

    def run(self, started):
        rng = random.Random("ops")
        try:
            # What loadtest/soak deployed first: kept, so the first rollback has a version to go back to.
            self.versions = sorted(v["version"] for v in self.api.call("GET", "/v1/apps/hello/versions")["versions"])
        except Exception as e:  # noqa: BLE001
            self.record("deploy", False, f"listing hello's versions: {e}")
        purge_i = deploy_i = 0
        next_purge = started + PURGE_EVERY
        next_deploy = started + DEPLOY_EVERY / 2
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_purge:
                self.purge(purge_i, rng)
                purge_i += 1
                next_purge += PURGE_EVERY
            elif now >= next_deploy:
                self.deploy(deploy_i)
                deploy_i += 1
                next_deploy += DEPLOY_EVERY
            else:
                self.stop.wait(min(next_purge, next_deploy) - now)


# ----------------------------------------------------------------------------
# Sampling


def proc(pid):
    """(rss KiB, open fds, threads), or None once the process is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        if re.search(r"^State:\s+Z", status, re.M):
            return None
        rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds, threads
    except (OSError, AttributeError):
        return None


EDGE_LOAD_PROGRESS = re.compile(r"edge-load: \S+s, (\d+) requests")


def edge_load_count(path):
    """The last request count an edge-load progress line on stderr gave."""
    try:
        with open(path, errors="replace") as f:
            counts = EDGE_LOAD_PROGRESS.findall(f.read())
        return int(counts[-1]) if counts else 0
    except OSError:
        return 0


COLUMNS = [
    "timestamp", "seconds",
    "node_rss_kib", "node_fds", "node_threads",
    "cp_rss_kib", "cp_fds", "cp_threads",
    "node_tasks", "cp_tasks",
    "node_connections_open", "node_requests_in_flight", "node_cache_bytes", "node_sync_revision",
    "node_requests", "node_5xx", "cache_hits", "cache_misses", "cache_evictions",
    "cp_sync_waiters", "cp_revision",
    "load_requests", "load_errors", "edge_load_requests",
    "purges_ok", "purges_failed", "deploys_ok", "deploys_failed",
]
# Per-interval deltas of these counters (the rest are gauges or running totals).
DELTAS = {"node_requests", "node_5xx", "cache_hits", "cache_misses", "cache_evictions",
          "load_requests", "load_errors", "edge_load_requests"}


class Sampler:
    def __init__(self, args, tally, ops, edge_loads):
        self.args = args
        self.tally = tally
        self.ops = ops
        self.edge_loads = edge_loads
        self.rows = []
        self.prev = {}

    def sample(self, started):
        node = proc(self.args.node_pid)
        cp = proc(self.args.cp_pid)
        row = {
            "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.monotonic() - started),
        }
        row["node_rss_kib"], row["node_fds"], row["node_threads"] = node or ("", "", "")
        row["cp_rss_kib"], row["cp_fds"], row["cp_threads"] = cp or ("", "", "")
        raw = {}
        try:
            m = scrape(self.args.node_admin)
            # tokio's tasks alive (edge_runtime_tasks_alive); empty for a
            # node built before it was exported.
            if "edge_runtime_tasks_alive" in m:
                row["node_tasks"] = int(total(m, "edge_runtime_tasks_alive"))
            row["node_connections_open"] = int(total(m, "edge_connections_open"))
            row["node_requests_in_flight"] = int(total(m, "edge_requests_in_flight"))
            row["node_cache_bytes"] = int(total(m, "edge_cache_bytes"))
            row["node_sync_revision"] = int(total(m, "edge_sync_revision"))
            raw["node_requests"] = total(m, "edge_requests_total")
            raw["node_5xx"] = total(m, "edge_requests_total", 'status="5xx"')
            raw["cache_hits"] = total(m, "edge_cache_requests_total", 'result="hit"')
            raw["cache_misses"] = total(m, "edge_cache_requests_total", 'result="miss"')
            raw["cache_evictions"] = total(m, "edge_cache_evictions_total")
        except OSError:
            pass
        try:
            m = scrape(self.args.cp_admin)
            if "edge_cp_runtime_tasks_alive" in m:
                row["cp_tasks"] = int(total(m, "edge_cp_runtime_tasks_alive"))
            row["cp_sync_waiters"] = int(total(m, "edge_cp_sync_waiters"))
            row["cp_revision"] = int(total(m, "edge_cp_revision"))
        except OSError:
            pass
        raw["load_requests"], raw["load_errors"] = self.tally.totals()
        raw["edge_load_requests"] = sum(edge_load_count(e["stderr"]) for e in self.edge_loads)
        for name, value in raw.items():
            prev = self.prev.get(name)
            row[name] = int(value - prev) if prev is not None else 0
            self.prev[name] = value
        with self.ops.lock:
            row.update(self.ops.counts)
        self.rows.append(row)
        return row, node is not None, cp is not None


# ----------------------------------------------------------------------------
# Verdict, summary, chart


def thirds(rows):
    """The rows of the warm-up, middle and last thirds, by time."""
    end = rows[-1]["seconds"] or 1
    parts = ([], [], [])
    for r in rows:
        parts[min(2, int(3 * r["seconds"] / end))].append(r)
    # The last sample belongs to the last third.
    return parts


def values(rows, col, scale=1.0):
    return [r[col] / scale for r in rows if isinstance(r.get(col), (int, float))]


def slope_per_hour(rows, col, scale=1.0):
    pts = [(r["seconds"], r[col] / scale) for r in rows if isinstance(r.get(col), (int, float))]
    if len(pts) < 3:
        return 0.0
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return 3600 * sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else 0.0


def verdict(rows):
    """[(process, metric, middle median, last median, growth, limit, flat)]"""
    _, mid, last = thirds(rows)
    out = []
    for proc_name in ("node", "cp"):
        m_rss = values(mid, f"{proc_name}_rss_kib", 1024)
        l_rss = values(last, f"{proc_name}_rss_kib", 1024)
        m_fds = values(mid, f"{proc_name}_fds")
        l_fds = values(last, f"{proc_name}_fds")
        if not (m_rss and l_rss and m_fds and l_fds):
            out.append((proc_name, "rss", None, None, None, None, False))
            continue
        a, b = statistics.median(m_rss), statistics.median(l_rss)
        limit = max(a * RSS_TOLERANCE_PCT / 100, RSS_TOLERANCE_MIB)
        out.append((proc_name, "RSS MiB", a, b, b - a, limit, b - a <= limit))
        a, b = statistics.median(m_fds), statistics.median(l_fds)
        out.append((proc_name, "fds", a, b, b - a, FDS_TOLERANCE, b - a <= FDS_TOLERANCE))
    return out


def summary_table(rows):
    parts = thirds(rows)
    metrics = [
        ("node RSS (MiB)", "node_rss_kib", 1024, 1),
        ("node open fds", "node_fds", 1, 0),
        ("node threads", "node_threads", 1, 0),
        ("node tasks (tokio)", "node_tasks", 1, 0),
        ("node connections open", "node_connections_open", 1, 0),
        ("node cache (MiB)", "node_cache_bytes", 1 << 20, 1),
        ("cp RSS (MiB)", "cp_rss_kib", 1024, 1),
        ("cp open fds", "cp_fds", 1, 0),
        ("cp threads", "cp_threads", 1, 0),
        ("cp tasks (tokio)", "cp_tasks", 1, 0),
    ]
    lines = [
        "| metric | warm-up min / median / max | middle min / median / max | last min / median / max | last - middle (medians) | slope after warm-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, col, scale, digits in metrics:
        cells = []
        meds = []
        for part in parts:
            vs = values(part, col, scale)
            if vs:
                cells.append(" / ".join(f"{x:.{digits}f}" for x in (min(vs), statistics.median(vs), max(vs))))
                meds.append(statistics.median(vs))
            else:
                cells.append("-")
                meds.append(None)
        diff = f"{meds[2] - meds[1]:+.{digits}f}" if meds[1] is not None and meds[2] is not None else "-"
        slope = slope_per_hour(parts[1] + parts[2], col, scale)
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {diff} | {slope:+.{max(digits, 1)}f}/h |")
    return "\n".join(lines)


COLORS = {"node": "#4e79a7", "cp": "#e15759"}


def nice_step(raw):
    """1, 2 or 5 times a power of ten, at least `raw`."""
    exp = 10 ** int(f"{raw:e}".split("e")[1])
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return m * exp
    return 10 * exp


def svg_chart(rows, title, subtitle):
    width, panel_h, left, right, top = 900, 190, 70, 130, 70
    gap = 40
    panels = [
        ("RSS (MiB)", [("node", "node_rss_kib", 1024), ("cp", "cp_rss_kib", 1024)]),
        ("open fds", [("node", "node_fds", 1), ("cp", "cp_fds", 1)]),
        ("threads", [("node", "node_threads", 1), ("cp", "cp_threads", 1)]),
    ]
    height = top + len(panels) * (panel_h + gap) + 30
    parts = thirds(rows)
    end = max(rows[-1]["seconds"], 1)
    plot_w = width - left - right
    x = lambda s: left + plot_w * s / end  # noqa: E731
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="22" font-size="15" text-anchor="middle">{esc(title)}</text>',
        f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{esc(subtitle)}</text>',
    ]
    for p, (label, series) in enumerate(panels):
        y0 = top + p * (panel_h + gap)
        vals = [v for _, col, sc in series for v in values(rows, col, sc)]
        lo, hi = (min(vals), max(vals)) if vals else (0, 1)
        # From 0, unless that would flatten the lines; round ticks.
        lo = 0 if lo < (hi - lo) * 2 else lo - (hi - lo) * 0.1
        step = nice_step((hi - lo) / 4 if hi > lo else 1)
        lo = step * int(lo // step)
        hi = step * (int(hi // step) + 1)
        ticks = [lo + step * i for i in range(int(round((hi - lo) / step)) + 1)]
        y = lambda v: y0 + panel_h * (1 - (v - lo) / (hi - lo))  # noqa: E731
        # Thirds: the warm-up shaded, boundaries dashed.
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w / 3:.1f}" height="{panel_h}" fill="#f3f3f3"/>')
        for k in (1, 2):
            xx = left + plot_w * k / 3
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + panel_h}" stroke="#bbb" stroke-dasharray="4 3"/>')
        if p == 0:
            for k, name in enumerate(["warm-up", "middle third", "last third"]):
                out.append(f'<text x="{left + plot_w * (k + 0.5) / 3:.1f}" y="{y0 - 6}" text-anchor="middle" fill="#888">{name}</text>')
        for v in ticks:
            yy = y(v)
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>')
        out.append(f'<text x="14" y="{y0 + panel_h / 2:.1f}" transform="rotate(-90 14 {y0 + panel_h / 2:.1f})" text-anchor="middle">{label}</text>')
        unit, per = ("s", 1) if end <= 600 else ("min", 60)
        xstep = nice_step(end / per / 8)
        s = 0.0
        while s * per <= end:
            out.append(f'<text x="{x(s * per):.1f}" y="{y0 + panel_h + 15}" text-anchor="middle" fill="#555">{s:g} {unit}</text>')
            s += xstep
        for k, (name, col, sc) in enumerate(series):
            pts = [(x(r["seconds"]), y(r[col] / sc)) for r in rows if isinstance(r.get(col), (int, float))]
            if pts:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
                out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[name]}" stroke-width="1.8"/>')
                # The medians the verdict compares, over their thirds.
                for k3 in (1, 2):
                    vs = values(parts[k3], col, sc)
                    if vs:
                        my = y(statistics.median(vs))
                        out.append(f'<line x1="{left + plot_w * k3 / 3:.1f}" x2="{left + plot_w * (k3 + 1) / 3:.1f}" '
                                   f'y1="{my:.1f}" y2="{my:.1f}" stroke="#222" stroke-width="1" stroke-dasharray="6 4"/>')
                last = values(rows, col, sc)[-1]
                ly = y0 + 20 + 18 * k
                out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="10" height="10" fill="{COLORS[name]}"/>')
                out.append(f'<text x="{left + plot_w + 28}" y="{ly}">{name}: {last:.1f}</text>' if sc != 1
                           else f'<text x="{left + plot_w + 28}" y="{ly}">{name}: {last:.0f}</text>')
    out.append(f'<text x="{left}" y="{height - 10}" fill="#555">Shaded: warm-up (left out of the verdict). '
               'Dashed black: the medians of the middle and last thirds, which the verdict compares.</text>')
    out.append("</svg>\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------
# The run


def start_edge_loads(args):
    """Two open-loop edge-load runs for the whole soak: cache hits over
    HTTPS/h2 on one URL, and the hello component over HTTP/1.1."""
    runs = [
        ("hits-h2", f"https://site.soak:{args.https}/hot/0",
         ["--connect", f"127.0.0.1:{args.https}", "--h2", "--insecure", "-c", "4", "--rate", f"{200 * RATE_SCALE:g}"]),
        ("hello-h1", f"http://hello.soak:{args.http}/",
         ["--connect", f"127.0.0.1:{args.http}", "-c", "4", "--rate", f"{100 * RATE_SCALE:g}"]),
    ]
    procs = []
    for label, url, extra in runs:
        stderr = os.path.join(args.work, f"edge-load-{label}.err")
        json_path = os.path.join(args.work, f"edge-load-{label}.json")
        # A few seconds past the last sample, so that sample sees the full load.
        cmd = [args.edge_load, url, *extra, "-d", f"{args.seconds + 5}s", "--progress", "1s",
               "--label", label, "--json", json_path]
        p = subprocess.Popen(cmd, stdout=open(os.path.join(args.work, f"edge-load-{label}.out"), "w"),
                             stderr=open(stderr, "w"))
        procs.append({"label": label, "proc": p, "stderr": stderr, "json": json_path})
    return procs


def run(args):
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "soak.csv")
    svg_path = os.path.join(args.out, "soak.svg")
    md_path = os.path.join(args.out, "summary.md")
    stop = threading.Event()
    abort = threading.Event()
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        abort.set()
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def log(msg):
        print(msg, flush=True)

    tally = Tally()
    api = Api(args.cp_url, args.token)
    ops = Ops(api, args.node_admin, args.hello_wasm, stop, abort, log)
    ops.http_port = args.http
    load = Load({"http": args.http, "https": args.https}, tally, stop)
    edge_loads = start_edge_loads(args)
    sampler = Sampler(args, tally, ops, edge_loads)

    started = time.monotonic()
    t_started = datetime.datetime.now(datetime.timezone.utc)
    threads = load.start()
    ops_thread = threading.Thread(target=ops.run, args=(started,), daemon=True)
    ops_thread.start()

    died = []
    with open(csv_path, "w") as csv:
        csv.write(",".join(COLUMNS) + "\n")
        k = 0
        while True:
            row, node_alive, cp_alive = sampler.sample(started)
            csv.write(",".join(str(row.get(c, "")) for c in COLUMNS) + "\n")
            csv.flush()
            secs = row["seconds"]
            rate = (row.get("load_requests", 0) + row.get("edge_load_requests", 0)) / SAMPLE_EVERY if k else 0
            log(f"  {secs:5d}s  node {fmt_proc(row, 'node')} {row.get('node_connections_open', '-')} conns "
                f"| cp {fmt_proc(row, 'cp')} | {rate:.0f} req/s, {row.get('load_errors', 0)} errors, "
                f"cache {row.get('node_cache_bytes', 0) / 2**20:.1f} MiB | purges {row['purges_ok']}/"
                f"{row['purges_ok'] + row['purges_failed']} deploys {row['deploys_ok']}/{row['deploys_ok'] + row['deploys_failed']}")
            if not node_alive:
                died.append("edge-node")
            if not cp_alive:
                died.append("edge-cp")
            if died:
                abort.set()
            if died or stop.is_set() or secs >= args.seconds:
                break
            k += 1
            due = started + k * SAMPLE_EVERY
            stop.wait(max(0, due - time.monotonic()))
            if interrupted:
                break
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT + 5)
    ops_thread.join(timeout=130)

    # edge-load: its reports, or its failure.
    problems = []
    el_requests = el_failures = 0
    for e in edge_loads:
        p = e["proc"]
        if died or interrupted:
            p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if died or interrupted:
            continue
        try:
            with open(e["json"]) as f:
                report = json.load(f)
        except (OSError, ValueError):
            problems.append(f"edge-load {e['label']} wrote no report (exit {p.returncode}); see {e['stderr']}")
            continue
        failures = sum(n for s, n in report["statuses"].items() if not 200 <= int(s) < 300) + sum(report["errors"].values())
        el_requests += report["requests"]
        el_failures += failures
        e["report"] = report
        if failures:
            problems.append(f"edge-load {e['label']}: {failures} failures: statuses {report['statuses']} errors {report['errors']}")

    rows = sampler.rows
    py_requests, py_errors = tally.totals()
    requests = py_requests + el_requests
    errors = py_errors + el_failures
    error_rate = errors / requests if requests else 1.0
    for name in died:
        problems.append(f"{name} died during the run (see its log)")
    if error_rate > ERROR_RATE_MAX:
        problems.append(f"error rate {error_rate:.5f} above ERROR_RATE_MAX {ERROR_RATE_MAX}")
    if ops.failures:
        problems.append(f"{len(ops.failures)} purge/deploy failures: " + "; ".join(ops.failures[:5]))
    if ops.counts["purges_ok"] == 0 and rows[-1]["seconds"] >= PURGE_EVERY * 2:
        problems.append("no purge succeeded")
    if ops.counts["deploys_ok"] == 0 and rows[-1]["seconds"] >= DEPLOY_EVERY:
        problems.append("no deploy succeeded")

    results = verdict(rows) if len(rows) >= 6 else []
    flat = bool(results) and all(r[6] for r in results)
    word = "flat" if flat else "growing"
    if len(rows) < 6:
        word = "too short to tell"
    secs = rows[-1]["seconds"]
    hits = sum(r.get("cache_hits", 0) or 0 for r in rows)
    misses = sum(r.get("cache_misses", 0) or 0 for r in rows)
    evictions = sum(r.get("cache_evictions", 0) or 0 for r in rows)
    by_class = {}
    with tally.lock:
        by_class = dict(tally.requests)
        error_kinds = dict(tally.errors)
        last_errors = list(tally.last_errors)

    lines = []
    lines.append(f"Soak run {t_started:%Y-%m-%d %H:%M} UTC, {secs} s ({secs / 60:.1f} min), {args.commit}; "
                 f"samples every {SAMPLE_EVERY:g} s; {os.cpu_count()} cores (`{os.uname().release}`).")
    lines.append("")
    lines.append(f"**Verdict: {word}** (last third against middle third, medians: RSS within "
                 f"max({RSS_TOLERANCE_PCT:g}%, {RSS_TOLERANCE_MIB:g} MiB), fds within {FDS_TOLERANCE}).")
    lines.append("")
    for proc_name, metric, a, b, growth, limit, ok in results:
        if a is None:
            lines.append(f"- {proc_name}: no samples")
        else:
            d = 1 if metric.startswith("RSS") else 0
            lines.append(f"- {proc_name} {metric}: {a:.{d}f} -> {b:.{d}f} ({growth:+.{d}f}, limit +{limit:.{d}f}): "
                         f"{'flat' if ok else 'GROWING'}")
    lines.append("")
    lines.append(summary_table(rows))
    lines.append("")
    lines.append(f"- requests: {requests:,} ({requests / max(secs, 1):.0f} req/s; python clients "
                 f"{py_requests:,}, edge-load {el_requests:,}), errors {errors} (rate {error_rate:.5f}, "
                 f"max {ERROR_RATE_MAX})")
    classes = [f"{c} {n:,}" for c, n in sorted(by_class.items())]
    classes += [f"edge-load {e['label']} {e['report']['requests']:,}" for e in edge_loads if "report" in e]
    lines.append("- requests by class: " + ", ".join(classes))
    if error_kinds:
        lines.append("- errors by kind: " + ", ".join(f"{c}/{k} {n}" for (c, k), n in sorted(error_kinds.items())))
    lines.append(f"- node cache: {hits:,} hits, {misses:,} misses stored, {evictions:,} evictions")
    pm = sorted(ops.purge_ms)
    dm = sorted(ops.deploy_ms)
    lines.append(f"- purges: {ops.counts['purges_ok']} ok, {ops.counts['purges_failed']} failed"
                 + (f" (applied on the node: p50 {pm[len(pm) // 2]:.0f} ms, max {pm[-1]:.0f} ms)" if pm else ""))
    lines.append(f"- deploys (upload + activate / rollback / activate): {ops.counts['deploys_ok']} ok, "
                 f"{ops.counts['deploys_failed']} failed"
                 + (f" (applied on the node: p50 {dm[len(dm) // 2]:.0f} ms, max {dm[-1]:.0f} ms)" if dm else ""))
    log_lines, log_top = scan_logs(args.work)
    lines.append("- WARN/ERROR lines in the logs: " + ", ".join(f"{name} {n}" for name, n in log_lines.items()))
    lines.append(f"- CSV: `{shown(csv_path)}`; chart: `{shown(svg_path)}`")
    summary = "\n".join(lines)

    subtitle = (f"{t_started:%Y-%m-%d %H:%M} UTC, {secs / 60:.1f} min, {requests / max(secs, 1):.0f} req/s mixed, "
                f"{errors} errors; verdict: {word}")
    with open(svg_path, "w") as f:
        f.write(svg_chart(rows, "edge soak: node and control plane over time", subtitle))
    with open(md_path, "w") as f:
        f.write(summary + "\n")

    print()
    print(summary)
    if last_errors:
        print("\nlast errors:\n  " + "\n  ".join(last_errors))
    if log_top:
        print("\nmost frequent WARN/ERROR log lines (count, log, message):\n  " + "\n  ".join(log_top))
    if interrupted:
        print("\ninterrupted")
        return 130
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nverdict: {word}")
    return 0 if flat else 2


LOG_LEVEL = re.compile(r"^\S+\s+(WARN|ERROR)\s+(.*)$")


def scan_logs(work):
    """WARN and ERROR lines of the node's and the control plane's logs: how
    many, and the most frequent messages (digits masked, so request ids and
    durations do not split them)."""
    counts, top = {}, {}
    for name in ("node", "cp"):
        n = 0
        try:
            with open(os.path.join(work, f"{name}.log"), errors="replace") as f:
                for line in f:
                    m = LOG_LEVEL.match(line)
                    if m:
                        n += 1
                        key = (name, m.group(1) + " " + re.sub(r"[0-9]+", "N", m.group(2))[:160])
                        top[key] = top.get(key, 0) + 1
        except OSError:
            pass
        counts[name] = n
    ranked = sorted(top.items(), key=lambda kv: -kv[1])[:8]
    return counts, [f"{n:6d}  {name}: {msg}" for (name, msg), n in ranked]


def shown(path):
    """A path relative to the repository when it is inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def fmt_proc(row, name):
    rss = row[f"{name}_rss_kib"]
    if not isinstance(rss, int):
        return "GONE"
    return f"{rss / 1024:.1f} MiB {row[f'{name}_fds']} fds {row[f'{name}_threads']} thr"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("origin")
    o.add_argument("--listen", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=int, required=True)
    r.add_argument("--node-pid", type=int, required=True)
    r.add_argument("--cp-pid", type=int, required=True)
    r.add_argument("--http", type=int, required=True)
    r.add_argument("--https", type=int, required=True)
    r.add_argument("--node-admin", type=int, required=True)
    r.add_argument("--cp-admin", type=int, required=True)
    r.add_argument("--cp-url", required=True)
    r.add_argument("--token", required=True)
    r.add_argument("--hello-wasm", required=True)
    r.add_argument("--edge-load", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--commit", default="")
    args = ap.parse_args()
    if args.cmd == "origin":
        serve_origin(args.listen)
    else:
        sys.exit(run(args))


if __name__ == "__main__":
    main()
