#!/usr/bin/env python3
"""make fuzz: a fuzzing campaign against a live billingd (standard library only).

Starts its own world (a throwaway PostgreSQL through scripts/pg.sh, `billingd migrate`, the Stripe stand-in and
`billingd serve`), provisions tenants (one subscribed to team through the stand-in's Checkout, one with a paid top-up,
a saved card and a plan billed by invoice, one on free, one deleted), then sends FUZZ_REQUESTS requests over
FUZZ_CONCURRENCY keep-alive connections: JSON-RPC and tRPC calls generated from api-spec/openrpc.json (valid and
mutated), as every role and with bad tokens, batches up to and past the 100 cap, odd encodings, values past the
input limits, and a few requests to the other routes. Request i is made from its own RNG seeded by (FUZZ_SEED, i),
so a seed and an index reproduce a request (FUZZ_ONLY=i,j,... sends only those, prints them and saves their bytes).

Fails (exit 1) on any 5xx answer, any JSON-RPC or tRPC error of a 5xx kind inside a 200/207 answer (-32603), any
answer that leaks internals (SQL text, stack traces, source paths), a dropped connection or a timeout on an
ordinary request, a server crash, server RSS after the run above FUZZ_RSS_MAX_RATIO (1.5) times its RSS after the
first 1,000 requests, or (FUZZ_SCHEMATHESIS=1) a schemathesis failure on the OpenAPI routes.

Knobs (environment, or the options of --help): BILLINGD, FUZZ_REQUESTS, FUZZ_SEED, FUZZ_CONCURRENCY, FUZZ_TIMEOUT,
FUZZ_RSS_MAX_RATIO, FUZZ_SCHEMATHESIS, FUZZ_SCHEMATHESIS_EXAMPLES, SCHEMATHESIS, FUZZ_MAX_PRINT, FUZZ_SLOW_SECONDS,
FUZZ_KINDS, FUZZ_RESTART, FUZZ_RATE_LIMIT, FUZZ_LOG_LEVEL, FUZZ_ONLY, FUZZ_HOLD (keep the world up and print its
tokens, for reproducing by hand), FUZZ_KEEP.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
KIB = 1024
MIB = 1024 * 1024


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# JSON with the shapes json.dumps cannot write: raw number literals (1e999, -0), duplicate keys.


class Raw(str):
    """Written into the JSON verbatim."""


class Obj:
    """An object as a list of pairs, so keys may repeat."""

    def __init__(self, pairs):
        self.pairs = pairs


def enc(value, ascii_only=True):
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "1e999"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, Obj):
        return "{" + ",".join(enc(str(k), ascii_only) + ":" + enc(v, ascii_only) for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(enc(str(k), ascii_only) + ":" + enc(v, ascii_only) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(enc(v, ascii_only) for v in value) + "]"
    raise TypeError(type(value))


def encb(value, ascii_only=True):
    # surrogatepass: a lone surrogate written unescaped becomes bytes that are not UTF-8 (on purpose).
    return enc(value, ascii_only).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------------------------
# JWTs (HS256, as JWTKit signs them), to derive bad tokens from the ones `billingd token` mints.


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt(header, payload, secret, digest=hashlib.sha256):
    h = b64u(header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode())
    p = b64u(payload if isinstance(payload, bytes) else encb(payload))
    signature = hmac.new(secret.encode(), f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{b64u(signature)}"


# ---------------------------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: keep-alive, and able to send what http.client refuses (bad bytes, odd framing).


class Req:
    __slots__ = ("index", "label", "method", "target", "raw", "oversize", "tolerate_close", "close_after", "head",
                 "auth", "half_close")

    def __init__(self, label, method, target, raw, auth="", oversize=False, tolerate_close=False, close_after=False,
                 head=False, half_close=False):
        self.index = -1
        self.label = label
        self.method = method
        self.target = target
        self.raw = raw
        self.auth = auth
        self.oversize = oversize
        self.tolerate_close = tolerate_close
        self.close_after = close_after
        self.head = head
        self.half_close = half_close

    @property
    def body(self):
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""


def build(label, method, target, headers=(), body=None, auth="", auth_label="", content_type="application/json",
          length=True, host=True, version="HTTP/1.1", **flags):
    """A request's bytes. `auth` is the Authorization header's value (None: no header)."""
    if isinstance(target, str):
        target = target.encode("utf-8", "surrogatepass")
    lines = [method.encode("latin-1") + b" " + target + b" " + version.encode()]
    if host:
        lines.append(b"Host: 127.0.0.1")
    if auth is not None and auth != "":
        lines.append(b"Authorization: " + (auth if isinstance(auth, bytes) else auth.encode("utf-8", "surrogatepass")))
    if content_type is not None and body is not None:
        lines.append(b"Content-Type: " + (content_type if isinstance(content_type, bytes) else content_type.encode()))
    for name, value in headers:
        lines.append((name if isinstance(name, bytes) else name.encode()) + b": " +
                     (value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")))
    if body is not None and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    return Req(label, method, target.decode("latin-1"), raw, auth=auth_label, **flags)


class Outcome:
    __slots__ = ("status", "headers", "body", "error", "keep", "seconds")

    def __init__(self, status=None, headers=None, body=b"", error=None, keep=True, seconds=0.0):
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.error = error
        self.keep = keep
        self.seconds = seconds


class Closed(Exception):
    pass


class Conn:
    def __init__(self, port, timeout):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buf = bytearray()
        self.received = 0

    def open(self):
        self.close()
        self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _recv(self):
        data = self.sock.recv(256 * KIB)
        if not data:
            raise Closed("the server closed the connection")
        self.received += len(data)
        self.buf += data

    def _send(self, req):
        raw = req.raw
        if not req.oversize:
            self.sock.sendall(raw)
            if req.half_close:
                self.sock.shutdown(socket.SHUT_WR)
            return
        # A body past the limit: stop sending once the server has answered (it need not read the rest).
        head_end = raw.index(b"\r\n\r\n") + 4
        self.sock.sendall(raw[:head_end])
        for start in range(head_end, len(raw), 64 * KIB):
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                return
            try:
                self.sock.sendall(raw[start:start + 64 * KIB])
            except (BrokenPipeError, ConnectionResetError):
                return

    def _response(self, head_request):
        while True:
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(self.buf) > MIB:
                    raise Closed("a response head over 1 MiB")
                self._recv()
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            status = int(parts[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            if 100 <= status < 200:
                continue
            break
        keep = headers.get("connection", "").lower() != "close"
        if head_request or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                while b"\r\n" not in self.buf:
                    self._recv()
                line_end = self.buf.find(b"\r\n")
                size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
                del self.buf[:line_end + 2]
                while len(self.buf) < size + 2:
                    self._recv()
                body += self.buf[:size]
                del self.buf[:size + 2]
                if size == 0:
                    break
            body = bytes(body)
        elif "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buf) < size:
                self._recv()
            body = bytes(self.buf[:size])
            del self.buf[:size]
        else:
            try:
                while True:
                    self._recv()
            except Closed:
                pass
            body = bytes(self.buf)
            self.buf = bytearray()
            keep = False
        return status, headers, body, keep

    def exchange(self, req):
        started = time.monotonic()
        for attempt in (0, 1):
            fresh = self.sock is None
            try:
                if fresh:
                    self.open()
                self.received = 0
                self._send(req)
                status, headers, body, keep = self._response(req.head)
                return Outcome(status, headers, body, keep=keep and not req.oversize and not req.close_after,
                               seconds=time.monotonic() - started)
            except socket.timeout:
                self.close()
                return Outcome(error="timeout: no answer in %ss" % self.timeout, keep=False,
                               seconds=time.monotonic() - started)
            except (Closed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as error:
                self.close()
                # A kept-alive connection the server had closed before this request: try once on a new one.
                if attempt == 0 and not fresh and self.received == 0:
                    continue
                return Outcome(error="connection closed: %s" % (error or type(error).__name__), keep=False,
                               seconds=time.monotonic() - started)
            except ConnectionRefusedError as error:
                self.close()
                return Outcome(error="connection refused: %s" % error, keep=False, seconds=time.monotonic() - started)
            except (ValueError, IndexError) as error:
                self.close()
                return Outcome(error="unreadable answer: %s" % error, keep=False, seconds=time.monotonic() - started)
            except OSError as error:
                self.close()
                return Outcome(error="socket error: %s" % error, keep=False, seconds=time.monotonic() - started)
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------------
# The world: PostgreSQL, migrations, the stand-in, the server.


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class World:
    def __init__(self, binary, seed, keep):
        self.binary = os.path.abspath(binary)
        self.seed = seed
        self.keep = keep
        self.base = tempfile.mkdtemp(prefix="billing-fuzz.")
        self.pg_started = False
        self.stand_in = None
        self.server = None
        self.save_logs = False
        self.rng = random.Random(f"world:{seed}")
        token = lambda n: "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))
        self.jwt_secret = "fuzz-jwt-" + token(40)
        self.webhook_secret = "whsec_fuzz_" + token(24)
        self.metrics_token = "fuzz-metrics-" + token(24)
        self.super_pw = "fuzz-" + token(16)
        self.app_pw = "fuzz-app-" + token(16)

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def env(self):
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("BILLING_", "STRIPE_", "DATABASE_")):
                del env[key]
        # Run in the world's folder (a developer's .env in the repository is not read), on the repository's files.
        env.update({
            "BILLING_RESOURCES_DIR": ROOT,
            "DATABASE_OWNER_URL": f"postgres://postgres:{self.super_pw}@{HOST}:{self.pg_port}/billing",
            "DATABASE_URL": f"postgres://billing_app:{self.app_pw}@{HOST}:{self.pg_port}/billing",
            "BILLING_JWT_SECRET": self.jwt_secret,
            "BILLING_HTTP_PORT": str(self.port),
            "BILLING_PUBLIC_URL": self.url,
            "BILLING_LOG_LEVEL": os.environ.get("FUZZ_LOG_LEVEL", "warning"),
            "BILLING_METRICS_TOKEN": self.metrics_token,
            "STRIPE_SECRET_KEY": "sk_test_fuzz",
            "STRIPE_API_BASE": f"http://{HOST}:{self.stripe_port}",
            "STRIPE_WEBHOOK_SECRETS": self.webhook_secret,
            "BILLING_STRIPE_RETRY_INITIAL_MS": "50",
            "BILLING_INBOX_POLL_MS": "200",
            "BILLING_INBOX_RETRY_INITIAL_MS": "200",
            # High enough that valid calls get past them for a while; a 429 after that is a fine answer.
            "BILLING_CHECKOUT_SESSIONS_PER_MINUTE": os.environ.get("FUZZ_RATE_LIMIT", "300"),
            "BILLING_RATE_LIMIT_CHANGES_PER_MINUTE": os.environ.get("FUZZ_RATE_LIMIT", "300"),
            "BILLING_RATE_LIMIT_PORTAL_PER_MINUTE": os.environ.get("FUZZ_RATE_LIMIT", "300"),
        })
        return env

    def start(self):
        self.pg_port = free_port()
        self.port = free_port()
        self.stripe_port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        log(f"== PostgreSQL on {HOST}:{self.pg_port} ({self.base})")
        self.pg_started = True
        subprocess.run([os.path.join(ROOT, "scripts/pg.sh"), "start", self.base, str(self.pg_port), self.super_pw],
                       check=True)
        subprocess.run(["psql", "-q", "-h", HOST, "-p", str(self.pg_port), "-U", "postgres", "-d", "postgres",
                        "-c", "CREATE DATABASE billing"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, PGPASSWORD=self.super_pw))
        env = self.env()
        migrate = subprocess.run([self.binary, "migrate"], cwd=self.base, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        if migrate.returncode != 0:
            raise SystemExit("billingd migrate failed:\n" + migrate.stdout.decode("utf-8", "replace"))
        log(f"== Stripe stand-in on {HOST}:{self.stripe_port}")
        self.stand_in_log = open(os.path.join(self.base, "stand-in.log"), "wb")
        self.stand_in = subprocess.Popen(
            [self.binary, "stand-in", "--port", str(self.stripe_port), "--webhook-url", f"{self.url}/webhooks/stripe",
             "--webhook-secret", self.webhook_secret, "--webhook-retry-ms", "500"],
            cwd=self.base, env=env, stdout=self.stand_in_log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_http(self.stripe_port, "GET /v1/customers", self.stand_in, "stand-in.log",
                       auth="Bearer sk_test_fuzz", ok=lambda status: status < 500)
        self.start_server()

    def start_server(self, restart=False):
        """`billingd serve`; after a crash, again, with its log appended to the same file."""
        if not restart:
            log(f"== billingd serve on {self.url}")
        self.server_log = open(os.path.join(self.base, "billingd.log"), "ab")
        self.server = subprocess.Popen([self.binary, "serve"], cwd=self.base, env=self.env(),
                                       stdout=self.server_log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_http(self.port, "GET /readyz", self.server, "billingd.log", ok=lambda status: status == 200)

    def wait_http(self, port, line, process, log_name, auth=None, ok=lambda status: True, seconds=120):
        method, target = line.split(" ", 1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{log_name.split('.')[0]} exited ({process.returncode}); its log:\n{self.tail(log_name)}")
            try:
                conn = Conn(port, 5)
                outcome = conn.exchange(build("setup", method, target, auth=auth))
                conn.close()
                if outcome.status is not None and ok(outcome.status):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"no answer from {line} on port {port} within {seconds} s; log:\n{self.tail(log_name)}")

    def tail(self, name, lines=40):
        try:
            with open(os.path.join(self.base, name), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def alive(self, seconds=60):
        """Whether the server still answers /healthz (waiting out a backtrace in progress); False once it exited."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                return False
            try:
                conn = Conn(self.port, 2)
                outcome = conn.exchange(build("probe", "GET", "/healthz"))
                conn.close()
                if outcome.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        return self.server.poll() is None

    def crash_report(self):
        """The runtime's reason and the crashed thread's first frames, from the server's log."""
        try:
            with open(os.path.join(self.base, "billingd.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        marks = [i for i, line in enumerate(lines) if line.startswith("*** Signal") or "Fatal error" in line]
        start = marks[-1] if marks else max(0, len(lines) - 40)
        picked = [line for line in lines[start:start + 12] if line.strip()]
        crashed = next((i for i in range(start, len(lines)) if "crashed:" in lines[i]), None)
        if crashed is not None:
            picked += [line[:240] for line in lines[crashed:crashed + 12] if line.strip()]
        return "\n".join(picked)

    def rss_kib(self):
        try:
            with open(f"/proc/{self.server.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self):
        """Stops what start() started; with save_logs, the server's and the stand-in's logs outlive the folder."""
        for process in (self.server, self.stand_in):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.pg_started:
            subprocess.run([os.path.join(ROOT, "scripts/pg.sh"), "stop", self.base], check=False)
        if self.save_logs and not self.keep:
            for name in ("billingd.log", "stand-in.log", "server.log"):
                source = os.path.join(self.base, name)
                if os.path.exists(source):
                    kept = "postgres.log" if name == "server.log" else name  # scripts/pg.sh logs to server.log
                    target = os.path.join(tempfile.gettempdir(), f"billing-fuzz-{self.seed}.{kept}")
                    shutil.copyfile(source, target)
                    log(f"== {kept} kept as {target}")
        if self.keep:
            log(f"== kept {self.base} (FUZZ_KEEP)")
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- tokens and tenants

    def mint(self, specs):
        """`billingd token` for each (role, tenant or None), in parallel."""
        env = self.env()
        processes = []
        for role, tenant in specs:
            args = [self.binary, "token", "--role", role, "--ttl", "86400", "--sub", f"fuzz-{role}"]
            if tenant:
                args += ["--tenant", tenant]
            processes.append(subprocess.Popen(args, cwd=self.base, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE))
        tokens = []
        for process, spec in zip(processes, specs):
            out, err = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"billingd token {spec} failed: {err.decode()}")
            tokens.append(out.decode().strip())
        return tokens

    def call(self, token, method, params=None, expect_result=True):
        envelope = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            envelope["params"] = params
        conn = Conn(self.port, 60)
        outcome = conn.exchange(build("setup", "POST", "/rpc", body=encb(envelope), auth=f"Bearer {token}"))
        conn.close()
        if outcome.error or outcome.status != 200:
            raise SystemExit(f"setup call {method} failed: {outcome.status} {outcome.error} {outcome.body[:500]!r}")
        answer = json.loads(outcome.body)
        if expect_result and "result" not in answer:
            raise SystemExit(f"setup call {method} {params} answered {answer}")
        return answer

    def pay(self, session_id):
        conn = Conn(self.stripe_port, 60)
        body = b"outcome=pay"
        outcome = conn.exchange(build("setup", "POST", f"/checkout/{session_id}", body=body,
                                      content_type="application/x-www-form-urlencoded"))
        conn.close()
        if outcome.status not in (200, 303):
            raise SystemExit(f"paying {session_id} at the stand-in answered {outcome.status} {outcome.body[:300]!r}")

    def wait_for(self, what, probe, seconds=90):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if probe():
                return True
            time.sleep(0.25)
        log(f"   warning: {what} did not happen within {seconds} s; fuzzing on without it")
        return False

    def provision(self):
        """Tenants for the fuzz: T1 subscribed to team, T2 with a paid top-up, a saved card and an invoice-billed
        plan, T3 on free, TDEL deleted, TUNK never provisioned, and disposable ones for tenants.delete."""
        log("== provisioning tenants, tokens and payments")
        service, operator = self.mint([("service", None), ("operator", None)])
        self.service, self.operator = service, operator
        self.tenants = {name: self.uuid() for name in ("T1", "T2", "T3", "TDEL", "TUNK")}
        self.disposable = [self.uuid() for _ in range(12)]
        for name in ("T1", "T2", "T3", "TDEL"):
            self.call(service, "tenants.provision",
                      {"tenantId": self.tenants[name], "name": f"Fuzz {name}", "email": f"{name.lower()}@fuzz.example"})
        for index, tenant in enumerate(self.disposable):
            self.call(service, "tenants.provision",
                      {"tenantId": tenant, "name": f"Disposable {index}", "email": f"d{index}@fuzz.example"})
        specs = [(role, self.tenants[t]) for t in ("T1", "T2", "T3", "TDEL", "TUNK") for role in ("owner", "admin", "member")]
        minted = self.mint(specs)
        self.role_tokens = {("service", None): service, ("operator", None): operator}
        for (role, tenant), token in zip(specs, minted):
            name = next(n for n, t in self.tenants.items() if t == tenant)
            self.role_tokens[(role, name)] = token
        admin1, admin2 = self.role_tokens[("admin", "T1")], self.role_tokens[("admin", "T2")]
        self.session_ids = []
        self.payment_ids = []
        self.invoice_ids = []

        checkout = self.call(admin1, "billing.checkout", {"plan": "team", "seats": 3})["result"]
        self.session_ids.append(checkout["sessionId"])
        self.pay(checkout["sessionId"])
        topup = self.call(admin2, "billing.topUp", {"credits": 1000, "idempotencyKey": "fuzz-setup"})["result"]
        self.session_ids.append(topup["sessionId"])
        self.pay(topup["sessionId"])
        setup = self.call(admin2, "billing.setupPaymentMethod", {})["result"]
        self.session_ids.append(setup["sessionId"])
        self.pay(setup["sessionId"])
        self.call(operator, "credits.grant", {"tenantId": self.tenants["T1"], "amount": 1_000_000,
                                              "reason": "fuzz setup", "idempotencyKey": "fuzz-setup"})
        self.wait_for("T1's team subscription", lambda: self.call(admin1, "billing.status")["result"]["plan"] == "team")
        self.wait_for("T2's top-up", lambda: self.call(admin2, "billing.credits")["result"]["balance"]["available"] >= 1000)

        def subscribed_by_invoice():
            answer = self.call(admin2, "billing.subscribeByInvoice", {"plan": "enterprise", "seats": 5},
                               expect_result=False)
            return "result" in answer
        self.wait_for("T2's plan billed by invoice (a saved card)", subscribed_by_invoice)
        payments = self.call(admin2, "billing.payments")["result"]["payments"]
        self.payment_ids = [p["paymentId"] for p in payments]
        invoices = self.call(admin2, "billing.invoices")["result"]["invoices"]
        self.invoice_ids = [i["id"] for i in invoices if i.get("source") == "billing"]
        self.call(service, "tenants.delete", {"tenantId": self.tenants["TDEL"]})
        log(f"   tenants: " + ", ".join(f"{k}={v}" for k, v in self.tenants.items()))
        log(f"   payments: {self.payment_ids}  invoices: {self.invoice_ids}  sessions: {len(self.session_ids)}")
        self.make_bad_tokens()

    def make_bad_tokens(self):
        """Authorization header values, by label; derived from a minted admin token by re-signing its claims."""
        base = self.role_tokens[("admin", "T1")]
        header = json.loads(b64u_decode(base.split(".")[0]))
        claims = json.loads(b64u_decode(base.split(".")[1]))
        now = int(time.time())
        secret = self.jwt_secret

        def claims_with(**changes):
            c = dict(claims)
            for key, value in changes.items():
                if value is DELETE:
                    c.pop(key, None)
                else:
                    c[key] = value
            return c

        h, p, s = base.split(".")
        bad = {
            "expired": jwt(header, claims_with(exp=now - 3600), secret),
            "expired-just": jwt(header, claims_with(exp=now - 2), secret),
            "bad-signature": f"{h}.{p}.{s[:10]}{'A' if s[10] != 'A' else 'B'}{s[11:]}",
            "truncated-signature": f"{h}.{p}.{s[:-5]}",
            "no-signature": f"{h}.{p}.",
            "other-secret": jwt(header, claims, "another-secret-of-more-than-32-characters"),
            "alg-none": b64u(b'{"alg":"none","typ":"JWT"}') + "." + p + ".",
            "alg-hs512": jwt({"alg": "HS512", "typ": "JWT"}, claims, secret, hashlib.sha512),
            "alg-rs256": jwt({"alg": "RS256", "typ": "JWT"}, claims, secret),
            "kid": jwt(dict(header, kid="../../etc/passwd"), claims, secret),
            "no-exp": jwt(header, claims_with(exp=DELETE), secret),
            "exp-string": jwt(header, claims_with(exp=str(now + 3600)), secret),
            "exp-float": jwt(header, claims_with(exp=now + 3600.5), secret),
            "exp-huge": jwt(header, claims_with(exp=Raw("1e300")), secret),
            "exp-bigint": jwt(header, claims_with(exp=Raw("123456789012345678901234567890")), secret),
            "exp-negative": jwt(header, claims_with(exp=-1), secret),
            "exp-null": jwt(header, claims_with(exp=None), secret),
            "role-unknown": jwt(header, claims_with(role="root"), secret),
            "role-empty": jwt(header, claims_with(role=""), secret),
            "role-upper": jwt(header, claims_with(role="ADMIN"), secret),
            "role-number": jwt(header, claims_with(role=1), secret),
            "tenant-garbage": jwt(header, claims_with(tenant_id="not-a-uuid"), secret),
            "tenant-upper": jwt(header, claims_with(tenant_id=self.tenants["T1"].upper()), secret),
            "tenant-nil": jwt(header, claims_with(tenant_id="00000000-0000-0000-0000-000000000000"), secret),
            "tenant-missing": jwt(header, claims_with(tenant_id=DELETE), secret),
            "tenant-number": jwt(header, claims_with(tenant_id=7), secret),
            "tenant-long": jwt(header, claims_with(tenant_id="a" * 5000), secret),
            "service-with-tenant": jwt(header, claims_with(role="service", tenant_id=self.tenants["T1"]), secret),
            "operator-with-tenant": jwt(header, claims_with(role="operator", tenant_id=self.tenants["T2"]), secret),
            "no-sub": jwt(header, claims_with(sub=DELETE), secret),
            "sub-number": jwt(header, claims_with(sub=42), secret),
            "sub-long": jwt(header, claims_with(sub="s" * 20000), secret),
            "sub-unicode": jwt(header, claims_with(sub="\u202e\u0000\ud83d\ude00 \ufeff"), secret),
            "claims-array": jwt(header, [claims], secret),
            "claims-not-json": jwt(header, b"{not json", secret),
            "claims-dup-role": jwt(header, Obj(list(claims.items()) + [("role", "operator")]), secret),
            "header-not-json": jwt(b"{{{", claims, secret),
            "two-segments": f"{h}.{p}",
            "four-segments": f"{h}.{p}.{s}.{s}",
            "empty-segments": "..",
            "padded": f"{h}==.{p}=.{s}=",
            "std-base64": base.replace("-", "+").replace("_", "/"),
            "whitespace-inside": f"{h}. {p}.{s}",
            "bearer-only": None,
        }
        self.bad_tokens = {label: ("Bearer " + v if v is not None else "Bearer") for label, v in bad.items()}
        self.bad_tokens.update({
            "bearer-space": "Bearer ",
            "bearer-lower": "bearer " + base,
            "bearer-double-space": "Bearer  " + base,
            "bearer-trailing": "Bearer " + base + " extra",
            "basic": "Basic " + base64.b64encode(b"admin:admin").decode(),
            "token-scheme": "Token " + base,
            "raw-token": base,
            "garbage": "Bearer " + "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz.-_") for _ in range(60)),
            "garbage-8k": "Bearer " + "x" * (8 * KIB),
            "non-ascii": b"Bearer \xff\xfe\xc3\x28 " + base.encode(),
            "utf8": "Bearer ünïcødé.tøkén.∑",
            "nul": b"Bearer abc\x00def",
            "metrics-token": "Bearer " + self.metrics_token,
        })


DELETE = object()


# ---------------------------------------------------------------------------------------------------------------
# Request generation from the OpenRPC document.

NASTY_STRINGS = [
    "", " ", "\t", "0", "-1", "1e999", "null", "true", "[]", "{}", "\u0000", "a\u0000b", "\ud800", "\udfff",
    "\ud83d\ude00", "é", "e\u0301", "\u202etxt.exe", "\ufeff", "\u200b", "\U0001d54f" * 10, "' or '1'='1",
    "'; drop table billing.tenants; --", "\" or \"\"=\"", "\\", "\\u0000", "%s%n%x%d", "${jndi:ldap://x}",
    "../../../../etc/passwd", "<script>alert(1)</script>", "\r\n", "line\nbreak", "$1", "?", "%", "_", "*", "\x7f",
    "\x01\x02\x03", "ﾟ･✿ヾ╲(｡◕‿◕｡)╱✿･ﾟ", "Ω≈ç√∫", "ǅ", "İ", "\uffff", "\U0010ffff", "NaN", "Infinity", "-0",
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "cs_test_", "pi_", "in_",
    "free", "pro", "team", "enterprise", "month", "year", "day", "http://evil.example/", "javascript:alert(1)",
    "//evil.example", "http://127.0.0.1:1/", "file:///etc/passwd", "mailto:a@b", "a@b", "@", "a@@b.c", "a b@c.d",
]

NASTY_NUMBERS = [
    0, -1, 1, 2, 3, 50, 51, 200, 201, 499, 500, 1000000, 1000001, 10 ** 9, 10 ** 9 + 1, 2 ** 31 - 1, 2 ** 31,
    -2 ** 31 - 1, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30, -10 ** 30,
    Raw("1e999"), Raw("-1e999"), Raw("-0"), Raw("-0.0"), Raw("0.0"), 1.5, -1.5, Raw("1e2"), Raw("1E-400"),
    Raw("123456789012345678901234567890"), Raw("0.1e1"), 1e308, Raw("5e-324"), Raw("3.0"), Raw("1E+2"),
]

ODD_KEYS = ["priceId", "tenant_id", "TenantId", "tenantID", "", " ", "__proto__", "constructor", "\u0000", "params",
            "jsonrpc", "id", "a" * 300, "é", "plan ", "seats\u0000", "role", "amount.x", "$where"]

STRIPE_METHODS = {"billing.checkout", "billing.topUp", "billing.portal", "billing.setupPaymentMethod",
                  "billing.updateSeats", "billing.changePlan", "billing.cancel", "billing.resume", "billing.refund",
                  "tenants.provision", "tenants.delete", "billing.retryInvoice", "billing.voidInvoice",
                  "billing.subscribeByInvoice"}

LIMITS = {"name": 200, "email": 254, "reason": 500, "description": 200, "query": 200, "cursor": 200,
          "idempotencyKey": 255, "sessionId": 255, "paymentId": 255, "tenantId": 64, "invoiceId": 64, "plan": 64,
          "interval": 16, "returnUrl": 2048}

WEBHOOK_TYPES = [
    "checkout.session.completed", "checkout.session.expired", "customer.subscription.updated",
    "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed", "charge.refunded", "refund.updated",
    "charge.dispute.created", "charge.dispute.closed", "payment_intent.succeeded", "payment_intent.payment_failed",
    "setup_intent.succeeded", "customer.updated", "customer.deleted", "payment_method.detached",
    "subscription_schedule.updated", "invoice_payment.paid", "unknown.event", "",
]


class Generator:
    def __init__(self, world, spec, seed, kinds=None):
        self.w = world
        self.seed = seed
        self.methods = spec["methods"]
        self.by_name = {m["name"]: m for m in self.methods}
        self.weights = [0.3 if m["name"] in STRIPE_METHODS else 1.0 for m in self.methods]
        self.tenant_names = ["T1", "T2", "T3", "TDEL", "TUNK"]
        self.bad_labels = sorted(world.bad_tokens)
        categories = [
            ("rpc-valid", 26, self.rpc_valid),
            ("rpc-mutated", 22, self.rpc_mutated),
            ("rpc-envelope", 7, self.rpc_envelope),
            ("rpc-batch", 6, self.rpc_batch),
            ("trpc", 15, self.trpc_single),
            ("trpc-batch", 5, self.trpc_batch),
            ("encoding", 10, self.odd_encoding),
            ("huge", 1, self.huge),
            ("http", 4, self.odd_http),
            ("routes", 3, self.other_routes),
        ]
        if kinds:
            unknown = set(kinds) - {name for name, _, _ in categories}
            if unknown:
                raise SystemExit(f"FUZZ_KINDS: no kind {sorted(unknown)}; the kinds: {[c[0] for c in categories]}")
            categories = [c for c in categories if c[0] in kinds]
        self.categories = [(name, fn) for name, _, fn in categories]
        self.category_weights = [w for _, w, _ in categories]

    def make(self, index):
        rng = random.Random(self.seed * 1_000_003 + index)
        name, fn = rng.choices(self.categories, self.category_weights)[0]
        req = fn(rng)
        req.index = index
        if not req.label:
            req.label = name
        elif not req.label.startswith(name):
            req.label = f"{name}:{req.label}"
        return req

    # -- tokens

    def tenant(self, rng, disposable=False):
        if disposable:
            return rng.choice(self.w.disposable + [self.w.tenants["TUNK"], self.w.tenants["TDEL"]])
        name = rng.choices(self.tenant_names, [40, 30, 20, 5, 5])[0]
        return self.w.tenants[name]

    def token_for(self, rng, role):
        """(Authorization value, label) for a role; a tenant role gets one of the tenants."""
        if role in ("service", "operator"):
            return "Bearer " + self.w.role_tokens[(role, None)], role
        name = rng.choices(self.tenant_names, [40, 30, 20, 5, 5])[0]
        return "Bearer " + self.w.role_tokens[(role, name)], f"{role}@{name}"

    def some_token(self, rng, roles=None):
        """Mostly a token of one of `roles`, sometimes another role, none, or a bad one."""
        r = rng.random()
        roles = roles or ["owner", "admin", "member", "service", "operator"]
        if r < 0.70:
            role = rng.choice(roles)
            return self.token_for(rng, role) + (role,)
        if r < 0.82:
            role = rng.choice(["owner", "admin", "member", "service", "operator"])
            return self.token_for(rng, role) + (role,)
        if r < 0.86:
            return None, "no-token", None
        if r < 0.90:
            return self.fresh_valid_token(rng), "self-signed", "admin"
        label = rng.choice(self.bad_labels)
        return self.w.bad_tokens[label], label, None

    def fresh_valid_token(self, rng):
        """A valid admin token no request used before (the server's verified-token cache keeps growing)."""
        claims = {"sub": f"fuzz-{rng.getrandbits(64):x}", "tenant_id": self.w.tenants[rng.choice(["T1", "T2", "T3"])],
                  "role": rng.choice(["owner", "admin", "member"]), "exp": int(time.time()) + 3600}
        return "Bearer " + jwt({"alg": "HS256", "typ": "JWT"}, claims, self.w.jwt_secret)

    # -- values

    def rand_text(self, rng, low=1, high=40):
        alphabet = rng.choice([
            "abcdefghijklmnopqrstuvwxyz ", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
            "äöüßéèçñøåΩЖщ中文日本語한국어 ", "\u0000\u0001\u001f\u007f\u0080\u00a0\u2028\u2029\ufeff\ufffd",
            "\U0001f600\U0001f4a9\U0001d54f\u0301\u200d",
        ])
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))

    def valid_value(self, rng, method, name, schema, role):
        w = self.w
        if name == "tenantId":
            return self.tenant(rng, disposable=method == "tenants.delete")
        if name == "name":
            return rng.choice(["Acme", "Fuzz Co", self.rand_text(rng, 1, 60)])
        if name == "email":
            return rng.choice([f"fuzz{rng.randint(0, 99999)}@example.com", "billing@acme.example",
                               f"{self.rand_text(rng, 1, 10).replace(' ', '')}@ex.com"])
        if name == "plan":
            return rng.choice(["free", "pro", "team", "strategos", "archon", "enterprise"])
        if name == "interval":
            return rng.choice(["month", "year"])
        if name == "seats":
            return rng.choice([1, 3, 4, 5, 10, 50, rng.randint(1, 60)])
        if name == "credits":
            return rng.choice([500, 1000, 5000, rng.randint(500, 1_000_000)])
        if name == "idempotencyKey":
            return rng.choice(["fz-%x" % rng.getrandbits(40), "fz-fixed-1", "fz-fixed-2", "fuzz-setup"])
        if name == "returnUrl":
            return rng.choice([w.url + "/billing", w.url + "/", w.url + "/billing?x=1", "https://example.com/"])
        if name == "sessionId":
            return rng.choice(w.session_ids + ["cs_test_%x" % rng.getrandbits(64)])
        if name == "limit":
            return rng.choice([1, 2, 10, 50, 200, rng.randint(1, 200)])
        if name == "cursor":
            return rng.choice(["1", "2", "10", "9999999", str(rng.randint(0, 1000))])
        if name == "amount":
            if method == "credits.grant":
                return rng.choice([1, 10, 250, -5, rng.randint(-100, 1000) or 1])
            if method == "credits.consume":
                return rng.choice([1, 5, 30, rng.randint(1, 100)])
            return rng.choice([1, 100, 500, rng.randint(1, 10000)])
        if name in ("reason", "description", "query"):
            return rng.choice(["fuzz", "report export", self.rand_text(rng, 1, 100)])
        if name == "paymentId":
            return rng.choice(w.payment_ids + ["pi_%x" % rng.getrandbits(48)])
        if name == "invoiceId":
            return rng.choice(w.invoice_ids + [str(uuid.UUID(int=rng.getrandbits(128), version=4))])
        if name == "atPeriodEnd":
            return rng.random() < 0.8 or role != "operator"
        return self.schema_value(rng, schema)

    def schema_value(self, rng, schema):
        kind = schema.get("type")
        if "enum" in schema:
            return rng.choice(schema["enum"])
        if kind == "integer":
            return rng.randint(schema.get("minimum", 0), schema.get("maximum", 1000))
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "string":
            if schema.get("format") == "uuid":
                return str(uuid.UUID(int=rng.getrandbits(128), version=4))
            return self.rand_text(rng, schema.get("minLength", 1), min(schema.get("maxLength", 40), 40))
        return None

    def valid_params(self, rng, method, role):
        params = {}
        for p in method.get("params", []):
            name = p["name"]
            if name == "tenantId":
                if role in ("service", "operator") and (p.get("required") or rng.random() < 0.97):
                    params[name] = self.valid_value(rng, method["name"], name, p["schema"], role)
                continue
            if p.get("required") or rng.random() < 0.5:
                params[name] = self.valid_value(rng, method["name"], name, p["schema"], role)
        return params

    def pick_method(self, rng):
        return rng.choices(self.methods, self.weights)[0]

    def valid_call(self, rng):
        """(method name, params, Authorization value, token label) of a valid call by an allowed role."""
        method = self.pick_method(rng)
        roles = method.get("x-roles") or []
        if roles:
            role = rng.choice(roles)
            auth, label = self.token_for(rng, role)
        else:
            role = None
            auth, label = (None, "no-token") if rng.random() < 0.5 else self.token_for(rng, "member")
        return method["name"], self.valid_params(rng, method, role), auth, label

    def nasty_value(self, rng, name=None, depth=0):
        r = rng.random()
        if r < 0.35:
            return rng.choice(NASTY_STRINGS)
        if r < 0.60:
            return rng.choice(NASTY_NUMBERS)
        if r < 0.68:
            return rng.choice([None, True, False, [], {}, [1, 2, 3], {"a": 1}, [None], {"": ""}, [[[]]]])
        if r < 0.80:
            limit = LIMITS.get(name, 1000)
            n = rng.choice([limit, limit + 1, limit * 2, 1001, 5000])
            return rng.choice(["x", "é", "\U0001f600", "\u0000", " "]) * n
        if r < 0.88:
            d = rng.choice([7, 8, 9, 20, 100])
            return Raw("[" * d + "1" + "]" * d) if rng.random() < 0.5 else Raw('{"a":' * d + "1" + "}" * d)
        if r < 0.94:
            n = rng.choice([99, 100, 101, 500])
            return list(range(n)) if rng.random() < 0.5 else {f"k{i}": i for i in range(n)}
        if r < 0.97 and name is not None:
            # Another tenant, or a tenant id in another spelling.
            t = self.tenant(rng)
            return rng.choice([t, t.upper(), "{" + t + "}", t.replace("-", ""), " " + t, t + "\u0000", t[:-1]])
        return self.rand_text(rng, 0, 300)

    def mutate_params(self, rng, method, params, role):
        params = dict(params)
        spec = [p["name"] for p in method.get("params", [])]
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            r = rng.random()
            if r < 0.20 and params:
                params.pop(rng.choice(sorted(params)))
            elif r < 0.35:
                params[rng.choice(ODD_KEYS)] = self.nasty_value(rng)
            elif r < 0.45:
                params["tenantId"] = self.nasty_value(rng, "tenantId") if rng.random() < 0.5 else self.tenant(rng)
            elif spec:
                name = rng.choice(spec)
                params[name] = self.nasty_value(rng, name)
        if rng.random() < 0.05:
            return Obj(list(params.items()) + [(k, self.nasty_value(rng, k)) for k in list(params)[:2]])
        return params

    # -- JSON-RPC

    def envelope(self, method, params, ident=1):
        e = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            e["params"] = params
        return e

    def rpc(self, label, payload, auth, auth_label, rng=None, **kw):
        body = payload if isinstance(payload, bytes) else encb(payload, ascii_only=rng.random() < 0.7 if rng else True)
        return build(label, "POST", "/rpc", body=body, auth=auth, auth_label=auth_label, **kw)

    def rpc_valid(self, rng):
        method, params, auth, label = self.valid_call(rng)
        if not params and rng.random() < 0.5:
            params = None
        ident = rng.choice([1, rng.randint(0, 10 ** 6), "a-%d" % rng.randint(0, 999), None])
        return self.rpc("rpc-valid:" + method, self.envelope(method, params, ident), auth, label, rng)

    def rpc_mutated(self, rng):
        method = self.pick_method(rng)
        auth, label, role = self.some_token(rng, method.get("x-roles") or None)
        params = self.valid_params(rng, method, role)
        params = self.mutate_params(rng, method, params, role)
        return self.rpc("rpc-mutated:" + method["name"], self.envelope(method["name"], params), auth, label, rng)

    def rpc_envelope(self, rng):
        method, params, auth, label = self.valid_call(rng)
        if rng.random() < 0.3:
            auth, label, _ = self.some_token(rng)
        e = self.envelope(method, params)
        r = rng.random()
        if r < 0.15:
            e["jsonrpc"] = rng.choice(["1.0", 2.0, Raw("2"), None, "2.0 ", "", ["2.0"]])
        elif r < 0.20:
            e.pop("jsonrpc")
        elif r < 0.40:
            e["method"] = rng.choice([None, 1, [], {}, "", "billing.nope", method.upper(), " " + method, method + "\u0000",
                                      "rpc.", "rpc.discover", "Billing.Status", "x" * 10000, "é" * 300, "../" + method,
                                      method + ",billing.status", "billing.status/../tenants.list"])
        elif r < 0.55:
            e["id"] = rng.choice([None, True, [], {}, [1], {"a": 1}, 1.5, Raw("1e999"), Raw("-0"), 2 ** 70, -2 ** 70,
                                  Raw("123456789012345678901234567890"), "", "x" * 2000, "\u0000", Raw("1E400")])
        elif r < 0.62:
            e.pop("id")
        elif r < 0.78:
            e["params"] = rng.choice([[], [1], [params], "x", 1, None, True, [None] * 5, Raw("1e999")])
        elif r < 0.86:
            e[rng.choice(["extra", "error", "result", "", "Method", "ID"])] = self.nasty_value(rng)
        elif r < 0.93:
            return self.rpc("rpc-envelope:dup-keys", Obj([("jsonrpc", "2.0"), ("id", 1), ("method", method),
                                                           ("method", rng.choice([m["name"] for m in self.methods])),
                                                           ("params", params), ("params", {}), ("id", "two")]),
                            auth, label, rng)
        else:
            return self.rpc("rpc-envelope:scalar", rng.choice([1, "x", None, True, Raw("1e999"), Raw("-0"), {}]),
                            auth, label, rng)
        return self.rpc("rpc-envelope:" + method, e, auth, label, rng)

    def batch_entry(self, rng, ident):
        r = rng.random()
        method, params, _, _ = self.valid_call(rng)
        if r < 0.6:
            return self.envelope(method, params or None, ident)
        if r < 0.75:
            m = self.by_name[method]
            return self.envelope(method, self.mutate_params(rng, m, params, None), ident)
        if r < 0.85:
            e = self.envelope(method, params or None)
            e.pop("id")
            return e
        return rng.choice([1, "x", None, [], [self.envelope("billing.plans", None, ident)], {}, {"jsonrpc": "2.0"}])

    def rpc_batch(self, rng):
        n = rng.choices([0, 1, 2, 5, 10, 50, 99, 100, 101, 150, 500, 1000], [3, 5, 10, 10, 10, 5, 4, 6, 6, 3, 2, 1])[0]
        auth, label, role = self.some_token(rng)
        if rng.random() < 0.1:
            entries = [{"jsonrpc": "2.0", "method": "billing.plans"} for _ in range(n)]  # notifications only: 204
        else:
            entries = [self.batch_entry(rng, i) for i in range(n)]
        return self.rpc(f"rpc-batch:{n}", entries, auth, label, rng)

    # -- tRPC

    def trpc_target(self, paths, input_value, batch=None, extra=""):
        query = []
        if batch is not None:
            query.append("batch=" + batch)
        if input_value is not None:
            query.append("input=" + urllib.parse.quote(input_value, safe=""))  # bytes: each byte percent-encoded
        return f"/trpc/{paths}" + ("?" + "&".join(query) if query else "") + extra

    def trpc_single(self, rng):
        r = rng.random()
        if r < 0.5:
            method, params, auth, label = self.valid_call(rng)
            kind_label = "valid"
        else:
            m = self.pick_method(rng)
            auth, label, role = self.some_token(rng, m.get("x-roles") or None)
            method, params = m["name"], self.mutate_params(rng, m, self.valid_params(rng, m, role), role)
            kind_label = "mutated"
        kind = self.by_name[method]["x-kind"]
        verb = ("GET" if kind == "query" else "POST") if rng.random() < 0.9 else rng.choice(["GET", "POST"])
        path = method
        if rng.random() < 0.08:
            path = rng.choice(["billing.nope", "", "billing.status%2Cbilling.plans", urllib.parse.quote("é"),
                               method.upper(), method + "%00", "x" * 3000, "%FF%FE", "..%2F..%2Fmetrics", "rpc.discover"])
        inp = encb(params, ascii_only=rng.random() < 0.7)
        if rng.random() < 0.1:
            inp = rng.choice([b"", b"null", b"[]", b"[1]", b'"x"', b"1e999", b"{", b"{\"a\":}", b"\xff\xfe",
                              b"\xef\xbb\xbf{}", b"{}" * 3, b"{\"a\":1,\"a\":2}"])
        if verb == "GET":
            target = self.trpc_target(path, None if rng.random() < 0.1 else inp)
            return build(f"trpc:{kind_label}:GET:{method}", "GET", target, auth=auth, auth_label=label)
        ct = rng.choice(["application/json"] * 8 + [None, "text/plain", "application/x-www-form-urlencoded"])
        return build(f"trpc:{kind_label}:POST:{method}", "POST", f"/trpc/{path}", body=inp, auth=auth, auth_label=label,
                     content_type=ct)

    def trpc_batch(self, rng):
        n = rng.choices([0, 1, 2, 5, 20, 99, 100, 101, 200, 1000], [2, 5, 10, 10, 6, 3, 5, 5, 2, 1])[0]
        verb = rng.choice(["GET", "POST"])
        kind = "query" if verb == "GET" else "mutation"
        pool = [m for m in self.methods if m.get("x-kind") == kind] if rng.random() < 0.85 else self.methods
        calls = [rng.choices(pool, [0.3 if m["name"] in STRIPE_METHODS else 1 for m in pool])[0] for _ in range(n)]
        auth, label, role = self.some_token(rng)
        inputs = {}
        for i, m in enumerate(calls):
            if rng.random() < 0.8:
                p = self.valid_params(rng, m, role)
                inputs[str(i)] = self.mutate_params(rng, m, p, role) if rng.random() < 0.3 else p
        paths = ",".join(m["name"] for m in calls)
        if rng.random() < 0.1:
            paths = rng.choice([paths + ",", "," + paths, paths.replace(",", ",,"), paths + ",billing.nope"])
        inp = inputs
        r = rng.random()
        if r < 0.08:
            inp = rng.choice([[], [inputs], "x", 1, None, {"-1": {}, "00": {}, "1e0": {}, "0.0": {}}])
        batch = rng.choice(["1"] * 8 + ["true", "0", "yes", ""])
        body = encb(inp)
        if verb == "GET":
            target = self.trpc_target(paths, body, batch=batch)
            return build(f"trpc-batch:GET:{n}", "GET", target, auth=auth, auth_label=label)
        return build(f"trpc-batch:POST:{n}", "POST", self.trpc_target(paths, None, batch=batch), body=body, auth=auth,
                     auth_label=label)

    # -- odd encodings

    def odd_encoding(self, rng):
        method, params, auth, label = self.valid_call(rng)
        good = encb(self.envelope(method, params))
        r = rng.random()
        if r < 0.18:
            ct = rng.choice([None, "", "text/plain", "application/json; charset=utf-8", "APPLICATION/JSON",
                             "application/json ; charset=latin1", "application/jsonx", "application/json, text/plain",
                             "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                             "application/vnd.api+json", "json", "application/json\t", " application/json",
                             "application/json;", "application/*", "*/*", "x" * 9000, b"application/json\xff"])
            return build("encoding:content-type", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                         content_type=ct)
        if r < 0.30:
            at = rng.randint(0, max(0, len(good) - 1))
            bad = rng.choice([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                              b"\xe2\x82", b"\xf8\x88\x80\x80\x80"])
            # Bytes that are not UTF-8, inside a string or anywhere.
            body = good.replace(b'"' + method.encode() + b'"', b'"' + method.encode() + bad + b'"') \
                if rng.random() < 0.5 else good[:at] + bad + good[at:]
            return self.rpc("encoding:invalid-utf8", body, auth, label)
        if r < 0.38:
            body = rng.choice([b"\xef\xbb\xbf" + good, good.decode().encode("utf-16"), good.decode().encode("utf-16-be"),
                               good.decode().encode("utf-32"), b"\xef\xbb\xbf\xef\xbb\xbf" + good, good + b"\xef\xbb\xbf"])
            return self.rpc("encoding:bom", body, auth, label)
        if r < 0.50:
            return self.rpc("encoding:truncated", good[:rng.randint(0, max(0, len(good) - 1))], auth, label)
        if r < 0.64:
            number = rng.choice(["1e999", "-1e999", "-0", "-0.0", "1E400", "1e-400", "123456789012345678901234567890",
                                 "-9223372036854775809", "9223372036854775808", "18446744073709551616", "0.1e1", "1.0",
                                 "01", "+1", ".5", "NaN", "Infinity", "-Infinity", "0x10", "1_000", "1e", "-", "1.",
                                 "4.9e-324", "1.7976931348623157e309", "-" + "9" * 400, "9" * 5000])
            field = rng.choice(["id", "seats", "credits", "amount", "limit", "atPeriodEnd", "params", "jsonrpc"])
            if field in ("id", "params", "jsonrpc"):
                text = good.decode("utf-8", "surrogatepass")
                body = re.sub(r'^\{', '{"%s":%s,' % (field, number), text, count=1).encode("utf-8", "surrogatepass")
            else:
                p = dict(params)
                p[field] = Raw(number)
                body = encb(self.envelope(method, p))
            return self.rpc("encoding:number", body, auth, label)
        if r < 0.72:
            body = encb(Obj([("jsonrpc", "2.0"), ("id", 1), ("method", method),
                             ("params", Obj(list(params.items()) + [(k, self.nasty_value(rng, k)) for k in params]))]))
            if not params:
                body = b'{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"id":2,"method":"billing.plans","method":"' + \
                    method.encode() + b'"}'
            return self.rpc("encoding:duplicate-keys", body, auth, label)
        if r < 0.82:
            at = rng.randint(0, len(good))
            body = rng.choice([good[:at] + b"\x00" + good[at:], good.replace(b'"2.0"', b'"2.0\x00"'),
                               good.replace(b'"' + method.encode() + b'"', b'"' + method.encode() + b'\\u0000"'),
                               b"\x00" + good, good + b"\x00", good.replace(b":", b":\x00", 1)])
            return self.rpc("encoding:nul", body, auth, label)
        if r < 0.90:
            body = rng.choice([b" \n\t\r" * 100 + good + b"\n" * 100, good + b" trailing", good + good, good + b",",
                               good.replace(b"}", b",}", 1), good.replace(b'"', b"'"), b"/* c */" + good,
                               good + b"//", b"[" + good, good + b"]", b"", b" ", b"{}", b"[]", b"[[]]", b"null",
                               good.replace(b"{", b"{\n", 1), b"\x1f\x8b\x08" + good])
            return self.rpc("encoding:syntax", body, auth, label)
        # Escapes: every character as \\u, and surrogate pairs, valid and lone.
        if rng.random() < 0.5:
            # Every character of the string values as an escape.
            e = self.envelope(method, {k: Raw('"' + "".join("\\u%04x" % ord(c) for c in v) + '"')
                                       if isinstance(v, str) else v for k, v in params.items()})
            return self.rpc("encoding:escapes", encb(e), auth, label)
        return self.rpc("encoding:escapes", encb(self.envelope(method, {**params, rng.choice(["name", "reason", "x"]): Raw(
            rng.choice(['"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\uZZZZ"', '"\\x41"',
                        '"\\"', '"\\/"', '"\\' + "\n" + '"', '"a\tb"', '"\\u00"']))})), auth, label)

    # -- huge and deep

    def huge(self, rng):
        r = rng.random()
        authed = rng.random() < 0.6
        if authed:
            auth, label = self.token_for(rng, rng.choice(["owner", "admin", "member", "service", "operator"]))
        else:
            auth, label = rng.choice([(None, "no-token"), (self.w.bad_tokens["garbage"], "garbage"),
                                      (self.w.bad_tokens["expired"], "expired")])
        limit = MIB if authed else 64 * KIB
        if r < 0.30:
            size = rng.choice([limit - 100, limit + 1, limit + 64 * KIB, 2 * MIB + 17])
            pad = max(0, size - 60)
            body = b'{"jsonrpc":"2.0","id":1,"method":"billing.plans","params":{"x":"' + b"a" * pad + b'"}}'
            chunked = rng.random() < 0.3
            return self.sized("huge:body", body, auth, label, chunked, over=len(body) > limit,
                              expect=rng.random() < 0.1)
        if r < 0.10:
            # A few values nested just under the decoder's own depth limit (512), side by side: the decoding costs
            # the server seconds (quadratic in the depth), so these are few.
            d, n = rng.choice([200, 300, 400, 500]), rng.choice([1, 2, 4])
            item = "[" * d + "]" * d if rng.random() < 0.7 else '{"a":' * d + "1" + "}" * d
            body = ('{"jsonrpc":"2.0","id":1,"method":"billing.plans","params":{"x":[%s]}}' % ",".join([item] * n)).encode()
            return self.sized(f"huge:deep-many:{n}x{d}", body, auth, label, False, over=len(body) > limit)
        if r < 0.55:
            d = rng.choice([9, 64, 512, 513, 1000, 5000, 30000, 100000, 400000])
            kind = rng.choice(["array", "object", "mixed"])
            if kind == "array":
                nested = "[" * d + "1" + "]" * d
            elif kind == "object":
                nested = '{"a":' * d + "1" + "}" * d
            else:
                nested = '[{"a":' * (d // 2) + "1" + "}]" * (d // 2)
            where = rng.random()
            if where < 0.6:
                body = ('{"jsonrpc":"2.0","id":1,"method":"billing.status","params":{"x":%s}}' % nested).encode()
            elif where < 0.8:
                body = ('{"jsonrpc":"2.0","id":%s,"method":"billing.plans"}' % nested).encode()
            else:
                body = nested.encode()
            if rng.random() < 0.4:
                target = self.trpc_target("billing.status", nested.encode())
                if len(nested) < 30000:
                    return build(f"huge:deep-trpc:{d}", "GET", target, auth=auth, auth_label=label,
                                 tolerate_close=True)
            return self.sized(f"huge:deep:{kind}:{d}", body, auth, label, False, over=len(body) > limit)
        if r < 0.75:
            n = rng.choice([101, 1000, 20000, 100000])
            if rng.random() < 0.5:
                value = Raw("[" + ",".join("1" for _ in range(n)) + "]")
            else:
                value = Raw("{" + ",".join('"k%d":1' % i for i in range(n)) + "}")
            body = encb(self.envelope(rng.choice(["billing.status", "billing.plans", "tenants.list"]), {"x": value}))
            return self.sized(f"huge:wide:{n}", body, auth, label, False, over=len(body) > limit)
        if r < 0.90:
            name = rng.choice(["name", "email", "reason", "query", "cursor", "idempotencyKey", "returnUrl", "x"])
            n = rng.choice([1001, 10000, 60000, 500000, 1000000])
            ch = rng.choice(["a", "é", "\U0001f600", "\\u0000", "\\ud83d\\ude00", "\\n"])
            value = Raw('"' + ch * (n // max(1, len(ch.encode()) // 2)) + '"') if ch.startswith("\\") else ch * n
            method = rng.choice(["tenants.provision", "billing.credits", "tenants.list", "billing.portal",
                                 "credits.consume", "billing.plans"])
            body = encb(self.envelope(method, {name: value}), ascii_only=False)
            return self.sized(f"huge:string:{name}:{n}", body, auth, label, False, over=len(body) > limit)
        # Many calls in a batch, each small: a body near the limit.
        entries = [self.envelope("billing.plans", None, i) for i in range(rng.choice([100, 101, 5000, 20000]))]
        body = encb(entries)
        return self.sized(f"huge:batch:{len(entries)}", body, auth, label, False, over=len(body) > limit)

    def sized(self, label, body, auth, auth_label, chunked, over, expect=False):
        headers = [("Expect", "100-continue")] if expect else []
        if chunked:
            pieces = []
            for start in range(0, len(body), 32 * KIB):
                chunk = body[start:start + 32 * KIB]
                pieces.append(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            framed = b"".join(pieces) + b"0\r\n\r\n"
            return build(label + ":chunked", "POST", "/rpc", headers=headers + [("Transfer-Encoding", "chunked")],
                         body=framed, length=False, auth=auth, auth_label=auth_label, oversize=over, close_after=over)
        return build(label, "POST", "/rpc", headers=headers, body=body, auth=auth, auth_label=auth_label,
                     oversize=over, close_after=over)

    # -- odd HTTP

    def odd_http(self, rng):
        method, params, auth, label = self.valid_call(rng)
        good = encb(self.envelope(method, params))
        r = rng.random()
        if r < 0.25:
            auth, label, _ = self.some_token(rng)
            if rng.random() < 0.5:
                label = rng.choice(self.bad_labels)
                auth = self.w.bad_tokens[label]
            if rng.random() < 0.2:
                # Two Authorization headers.
                return build("http:two-auth", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                             headers=[("Authorization", "Bearer " + self.w.role_tokens[("admin", "T1")])])
            return build("http:auth", "POST", "/rpc", body=good, auth=auth, auth_label=label)
        if r < 0.40:
            pieces = []
            at = 0
            while at < len(good):
                chunk = good[at:at + rng.randint(1, 64)]
                pieces.append(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                at += len(chunk)
            framed = b"".join(pieces) + rng.choice([b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n"])
            return build("http:chunked", "POST", "/rpc", headers=[("Transfer-Encoding", "chunked")], body=framed,
                         length=False, auth=auth, auth_label=label)
        if r < 0.52:
            variant = rng.choice(["cl-te", "bad-chunk", "cl-negative", "cl-text", "cl-two", "cl-short", "te-gzip",
                                  "cl-huge-declared", "cl-space"])
            if variant == "cl-te":
                headers, length = [("Content-Length", str(len(good))), ("Transfer-Encoding", "chunked")], False
                body = b"%x\r\n" % len(good) + good + b"\r\n0\r\n\r\n"
            elif variant == "bad-chunk":
                headers, length = [("Transfer-Encoding", "chunked")], False
                body = rng.choice([b"zz\r\n" + good + b"\r\n0\r\n\r\n", b"-1\r\n\r\n", b"ffffffffffffffffff\r\nx\r\n"])
            elif variant == "cl-negative":
                headers, length, body = [("Content-Length", "-1")], False, good
            elif variant == "cl-text":
                headers, length, body = [("Content-Length", "abc")], False, good
            elif variant == "cl-two":
                headers, length, body = [("Content-Length", str(len(good))), ("Content-Length", "3")], False, good
            elif variant == "cl-short":
                headers, length, body = [("Content-Length", str(max(0, len(good) - 5)))], False, good
            elif variant == "te-gzip":
                headers, length, body = [("Content-Encoding", "gzip")], True, good
            elif variant == "cl-huge-declared":
                headers, length, body = [("Content-Length", str(10 ** 30))], False, good
            else:
                headers, length, body = [("Content-Length", " %d " % len(good))], False, good
            return build("http:framing:" + variant, "POST", "/rpc", headers=headers, body=body, length=length, auth=auth,
                         auth_label=label, tolerate_close=True, close_after=True)
        if r < 0.64:
            verb, target = rng.choice([("PUT", "/rpc"), ("DELETE", "/rpc"), ("PATCH", "/rpc"), ("OPTIONS", "/rpc"),
                                       ("GET", "/rpc"), ("HEAD", "/rpc"), ("post", "/rpc"), ("FOO", "/rpc"),
                                       ("POST", "/rpc/"), ("POST", "/RPC"), ("POST", "/rpc?x=1"), ("POST", "//rpc"),
                                       ("POST", "/rpc%00"), ("POST", "/./rpc"), ("POST", "/x/../rpc"),
                                       ("POST", "http://127.0.0.1/rpc"), ("POST", "*"), ("DELETE", "/trpc/billing.status"),
                                       ("PUT", "/trpc/billing.topUp"), ("HEAD", "/trpc/billing.plans"),
                                       ("POST", "/trpc/"), ("GET", "/trpc"), ("GET", "/trpc/a/b")])
            flags = {"head": verb == "HEAD", "close_after": verb == "HEAD",
                     "tolerate_close": verb in ("FOO", "post") or target in ("*",)}
            return build("http:verb:%s %s" % (verb, target), verb, target, body=good if verb != "HEAD" else None,
                         auth=auth, auth_label=label, **flags)
        if r < 0.76:
            target = rng.choice([b"/rpc\xff", b"/trpc/billing.status?input=\xff\xfe", b"/trpc/\xc3\x28",
                                 b"/trpc/billing.plans?input=%FF", b"/trpc/billing.plans?input=%", b"/trpc/%",
                                 b"/trpc/billing.plans?input=%zz", b"/trpc/billing.plans?input=%00",
                                 b"/trpc/billing.plans?batch=1&batch=0&input={}", b"/trpc/billing.plans#frag",
                                 b"/trpc/billing.plans?" + b"&" * 5000, b"/trpc/billing.plans?input=" + b"%7B" * 3000])
            verb = "POST" if target.startswith(b"/rpc") else "GET"
            return build("http:target", verb, target, body=good if verb == "POST" else None, auth=auth,
                         auth_label=label, tolerate_close=True, close_after=True)
        if r < 0.88:
            variant = rng.choice(["http10", "no-host", "long-header", "many-headers", "header-bytes", "bad-header",
                                  "http2-line", "folded", "lf-only"])
            if variant == "http10":
                return build("http:http10", "POST", "/rpc", body=good, auth=auth, auth_label=label, version="HTTP/1.0",
                             close_after=True)
            if variant == "no-host":
                return build("http:no-host", "POST", "/rpc", body=good, auth=auth, auth_label=label, host=False,
                             tolerate_close=True, close_after=True)
            if variant == "long-header":
                return build("http:long-header", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                             headers=[("X-Long", "y" * rng.choice([8 * KIB, 70 * KIB, 200 * KIB]))],
                             tolerate_close=True, close_after=True)
            if variant == "many-headers":
                return build("http:many-headers", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                             headers=[("X-H%d" % i, "v") for i in range(rng.choice([100, 1000, 5000]))],
                             tolerate_close=True, close_after=True)
            if variant == "header-bytes":
                return build("http:header-bytes", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                             headers=[(b"X-Bytes", b"\xff\x00\x7f\xc3\x28")], tolerate_close=True, close_after=True)
            if variant == "bad-header":
                return build("http:bad-header", "POST", "/rpc", body=good, auth=auth, auth_label=label,
                             headers=[(b"Bad Header", b"x"), (b"", b"empty")], tolerate_close=True, close_after=True)
            req = build("http:" + variant, "POST", "/rpc", body=good, auth=auth, auth_label=label,
                        tolerate_close=True, close_after=True)
            if variant == "http2-line":
                req.raw = req.raw.replace(b"HTTP/1.1", b"HTTP/2.0", 1)
            elif variant == "folded":
                req.raw = req.raw.replace(b"\r\nContent-Type: application/json", b"\r\nContent-Type: application/\r\n json", 1)
            else:
                head, _, body = req.raw.partition(b"\r\n\r\n")
                req.raw = head.replace(b"\r\n", b"\n") + b"\n\n" + body
            return req
        # Half a request, then the write side closed: the server sees the end mid-body.
        cut = rng.randint(1, max(1, len(good) - 1))
        req = build("http:half-closed", "POST", "/rpc", body=good, auth=auth, auth_label=label, tolerate_close=True,
                    close_after=True)
        req.raw = req.raw[:len(req.raw) - len(good) + cut]
        req.half_close = True
        return req

    # -- the other routes

    def other_routes(self, rng):
        w = self.w
        r = rng.random()
        auth, label, _ = self.some_token(rng)
        if r < 0.35:
            target = rng.choice(["/healthz", "/readyz", "/metrics", "/billing", "/billing/app.js", "/billing/app.css",
                                 "/billing?checkout=" + urllib.parse.quote(rng.choice(NASTY_STRINGS), errors="surrogatepass"),
                                 "/billing?checkout=cs_test_1&canceled=true", "/nope", "/", "/metrics?x=1",
                                 "/billing/../metrics", "/.env", "/api-spec/openrpc.json", "/Package.swift"])
            if target.startswith("/metrics") and rng.random() < 0.3:
                auth, label = "Bearer " + w.metrics_token, "metrics-token"
            return build("routes:GET " + target.split("?")[0], "GET", target, auth=auth, auth_label=label)
        if r < 0.65:
            invoice = rng.choice(w.invoice_ids + [str(uuid.UUID(int=rng.getrandbits(128), version=4)), "not-a-uuid",
                                                  "%00", "..%2F..%2Fmetrics", "x" * 500])
            query = rng.choice(["", "?tenant=" + w.tenants["T2"], "?tenant=" + self.tenant(rng) + "&expires=" +
                                rng.choice(["1", "-1", "99999999999", "1e30", "abc", str(int(time.time()) + 3600)]) +
                                "&signature=" + rng.choice(["", "00" * 32, "zz", "a" * 1000]),
                                "?tenant=not-a-uuid", "?signature=x"])
            return build("routes:GET /invoices", "GET", f"/invoices/{invoice}{query}", auth=auth, auth_label=label)
        # Stripe's webhook endpoint: unsigned, badly signed, and signed events with odd objects.
        event = {"id": "evt_fz_%x" % rng.getrandbits(48), "object": "event", "type": rng.choice(WEBHOOK_TYPES),
                 "created": int(time.time()) - rng.randint(0, 100), "livemode": rng.random() < 0.1,
                 "api_version": "2026-10-28.endive",
                 "data": {"object": {"id": rng.choice(["cus_x", "sub_x", "in_x", "pi_x", "ch_x", "cs_x", "re_x", "du_x",
                                                        self.rand_text(rng, 1, 20)]),
                                     "object": rng.choice(["customer", "subscription", "invoice", "charge", "refund",
                                                           "checkout.session", "payment_intent", "dispute"]),
                                     "metadata": {"tenant_id": rng.choice([self.tenant(rng), "x", ""])},
                                     rng.choice(["amount", "status", "customer", "items", "mode"]): self.nasty_value(rng)}}}
        if rng.random() < 0.2:
            event = self.mutate_params(rng, {"params": [{"name": k} for k in event]}, event, None)
        body = encb(event)
        ts = int(time.time())
        kind = rng.choice(["none", "garbage", "old", "signed", "signed", "signed"])
        headers = []
        if kind == "garbage":
            headers = [("Stripe-Signature", rng.choice(["t=1,v1=00", "x", "", "t=abc,v1=zz", "v1=" + "0" * 64, "t=" +
                                                        "9" * 40 + ",v1=00"]))]
        elif kind in ("old", "signed"):
            t = ts - (4000 if kind == "old" else 0)
            sig = hmac.new(w.webhook_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            headers = [("Stripe-Signature", f"t={t},v1={sig}")]
        return build("routes:POST /webhooks/stripe:" + kind, "POST", "/webhooks/stripe", headers=headers, body=body)


# ---------------------------------------------------------------------------------------------------------------
# Judging answers.

LEAK_PATTERNS = [(name, re.compile(pattern)) for name, pattern in [
    ("SQL SELECT", r"(?<![A-Za-z0-9_])SELECT(?![A-Za-z0-9_])"),
    ("SQL INSERT", r"(?<![A-Za-z0-9_])INSERT(?![A-Za-z0-9_])"),
    ("SQL UPDATE", r"(?<![A-Za-z0-9_])UPDATE\s+[a-z_\"]"),
    ("SQL DELETE", r"(?<![A-Za-z0-9_])DELETE\s+FROM"),
    ("SQL relation", r"(?<![A-Za-z0-9_])relation(?![A-Za-z0-9_])"),
    ("SQL syntax error", r"syntax error"),
    ("PSQLError", r"PSQLError|PostgresError|PostgresNIO|sqlState|SQLSTATE"),
    ("SQL violates", r"violates"),
    ("SQL duplicate key", r"duplicate key value"),
    ("database URL", r"postgres(?:ql)?://"),
    ("Fatal error", r"Fatal error"),
    ("stack trace", r"Stack trace|Backtrace|Current stack trace|#\d+\s+0x[0-9a-fA-F]{6,}"),
    ("source path", r"/Sources/|\.swift(?![A-Za-z0-9_])|/\.build/|/root/|/work/"),
    ("Swift error type", r"DecodingError|codingPath|keyNotFound\(|typeMismatch\(|dataCorrupted\(|NIOCore|"
                         r"HTTPParserError|Swift\.[A-Z]"),
]]

FIVE_XX_NAMES = {"INTERNAL_SERVER_ERROR", "NOT_IMPLEMENTED", "BAD_GATEWAY", "SERVICE_UNAVAILABLE", "GATEWAY_TIMEOUT"}


def leaks(req, outcome):
    if not outcome.body:
        return []
    text = outcome.body.decode("latin-1")
    sent = req.raw.decode("latin-1")
    sent_variants = (sent, urllib.parse.unquote(sent), urllib.parse.unquote_plus(sent))
    found = []
    for name, pattern in LEAK_PATTERNS:
        match = pattern.search(text)
        # What the request itself carried may be echoed (a method name in "Method not found"): not a leak.
        if match and not any(pattern.search(s) for s in sent_variants):
            start = max(0, match.start() - 80)
            found.append(f"{name}: ...{text[start:match.end() + 80]!r}...")
    return found


def internal_errors(outcome):
    """JSON-RPC / tRPC errors of a 5xx kind inside an answer (/rpc answers 200 for them)."""
    body = outcome.body
    if b"-32603" not in body and b'"httpStatus":5' not in body:
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []
    found = []
    for item in document if isinstance(document, list) else [document]:
        error = item.get("error") if isinstance(item, dict) else None
        if not isinstance(error, dict):
            continue
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        if error.get("code") == -32603 or data.get("code") in FIVE_XX_NAMES or \
                (isinstance(data.get("httpStatus"), int) and data["httpStatus"] >= 500):
            found.append(f"{data.get('code')} ({error.get('code')}): {error.get('message')}")
    return found


def short(data, limit=400):
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes)"


class Stats:
    def __init__(self, total, max_print, world, seed, slow_seconds):
        self.seed = seed
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.total = total
        self.max_print = max_print
        self.world = world
        self.done = 0
        self.statuses = {}
        self.labels = {}
        self.five_xx = 0
        self.internal = 0
        self.leaks = 0
        self.drops = 0
        self.accepted_closes = 0
        self.failures = []
        self.printed = 0
        self.rss_first = None
        self.rss_first_at = None
        self.started = time.monotonic()
        self.slowest = (0.0, None)
        self.slow = []
        self.rss_base = 0
        self.restarts = 0
        self.print_failures = True

    def record(self, req, outcome):
        problems = []
        if outcome.error is not None:
            if req.tolerate_close or req.oversize:
                kind = "accepted-close"
            else:
                kind = "drop"
                problems.append(("drop", outcome.error))
        else:
            kind = "answer"
            if outcome.status >= 500:
                problems.append(("5xx", f"HTTP {outcome.status}"))
            for text in internal_errors(outcome):
                problems.append(("internal", text))
            for text in leaks(req, outcome):
                problems.append(("leak", text))
        with self.lock:
            self.done += 1
            key = outcome.status if kind == "answer" else ("closed" if kind == "accepted-close" else "dropped")
            self.statuses[key] = self.statuses.get(key, 0) + 1
            family = req.label.split(":")[0]
            self.labels[family] = self.labels.get(family, 0) + 1
            if kind == "accepted-close":
                self.accepted_closes += 1
            if outcome.seconds > self.slowest[0]:
                self.slowest = (outcome.seconds, req)
            if outcome.seconds > self.slow_seconds:
                self.slow.append((outcome.seconds, req, outcome))
            kinds = {p[0] for p in problems}
            self.five_xx += "5xx" in kinds
            self.internal += "internal" in kinds
            self.leaks += "leak" in kinds
            self.drops += "drop" in kinds
            if problems:
                self.failures.append((req, outcome, problems))
                self.printed += 1
                if not self.print_failures:
                    pass
                elif self.printed <= self.max_print:
                    print_failure(req, outcome, problems)
                elif self.printed <= self.max_print + 2000:
                    first = req.raw.split(b"\r\n", 1)[0]
                    log(f"FAIL request #{req.index} [{req.label}] {'/'.join(sorted(kinds))} "
                        f"{outcome.status or outcome.error}: {short(first, 120)} body {short(req.body, 160)}")
            since = self.done - self.rss_base
            if self.rss_first is None and (since == 1000 or (self.total - self.rss_base < 1000 and self.done == self.total)):
                self.rss_first = self.world.rss_kib()
                self.rss_first_at = self.done
            if self.done % max(1, self.total // 10) == 0:
                elapsed = time.monotonic() - self.started
                log(f"   {self.done}/{self.total} in {elapsed:.0f} s ({self.done / elapsed:.0f}/s); 5xx {self.five_xx}, "
                    f"internal {self.internal}, leaks {self.leaks}, drops {self.drops}; "
                    f"RSS {(self.world.rss_kib() or 0) / 1024:.1f} MiB")


LOG_LINE = re.compile(r"^\S+ (error|critical) (.*)$")
REQUEST_ID = re.compile(r"hb\.request\.id=([0-9a-f]+)")


def normalized(message):
    """A logged error without its ids and numbers, so one defect is one line."""
    message = REQUEST_ID.sub("", message)
    message = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", message)
    message = re.sub(r"\b(cs|pi|ch|cus|sub|in|re|evt|evt_fz|seti|pm)_[A-Za-z0-9_]+", r"\1_<id>", message)
    message = re.sub(r"\b\d{6,}\b", "N", message)
    return re.sub(r"^billingd: ", "", re.sub(r"\s+", " ", message)).strip()


def report_causes(stats, log_path):
    """Groups the failures by what the server logged at error level for their request id (X-Request-Id), and prints
    one whole example of each group."""
    by_id = {}
    errors = 0
    try:
        with open(log_path, "rb") as f:
            for raw_line in f:
                line = raw_line.decode("utf-8", "replace").rstrip("\n")
                match = LOG_LINE.match(line)
                if not match:
                    continue
                errors += 1
                request = REQUEST_ID.search(line)
                if request:
                    by_id.setdefault(request.group(1), []).append(normalized(match.group(2)))
    except OSError:
        pass
    log(f"   server log lines at error level: {errors} ({log_path})")
    if not stats.failures:
        return
    groups = {}
    for req, outcome, problems in stats.failures:
        request_id = outcome.headers.get("x-request-id", "")
        causes = set(by_id.get(request_id, []))
        if not causes:
            causes = {"(nothing logged) " + "; ".join(sorted({f"{k}: {normalized(t)[:160]}" for k, t in problems}))}
        for cause in causes:  # a batch may fail in several ways
            groups.setdefault(cause, []).append((req, outcome, problems))
    log("")
    log(f"== {len(stats.failures)} failing requests (FUZZ_SEED={stats.seed} FUZZ_ONLY=N sends request #N alone and "
        f"saves its bytes), {len(groups)} distinct causes (by the server's log for their "
        f"X-Request-Id); one example of each:")
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        labels = sorted({m[0].label for m in members})
        log(f"-- {len(members)} x {key}")
        log(f"   request kinds: {', '.join(labels[:8])}{' ...' if len(labels) > 8 else ''}")
        log(f"   requests: {', '.join('#%d' % m[0].index for m in members[:30])}{' ...' if len(members) > 30 else ''}")
        req, outcome, problems = min(members, key=lambda m: len(m[0].raw))
        print_failure(req, outcome, problems)


def _restarted(self):
    """The server was started again: its RSS is measured from its own first 1,000 requests."""
    with self.lock:
        self.rss_base = self.done
        self.rss_first = None
        self.restarts += 1


Stats.restarted = _restarted


def print_failure(req, outcome, problems, prefix="FAIL"):
    lines = [f"{prefix} request #{req.index} [{req.label}] token={req.auth or 'none'}" +
             "".join(f"; {k}: {t}" for k, t in problems)]
    head, _, body = req.raw.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0]
    lines.append(f"  request: {short(first, 300)}")
    headers = [h for h in head.split(b"\r\n")[1:] if not h.lower().startswith(b"authorization")]
    lines.append(f"  headers: {short(b' | '.join(headers), 300)}")
    lines.append(f"  body: {short(body)}")
    if outcome.error is None:
        lines.append(f"  answer: {outcome.status} {short(outcome.body)}")
    else:
        lines.append(f"  answer: {outcome.error}")
    log("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------


def run_schemathesis(world, schemathesis, examples):
    admin = world.mint([("admin", world.tenants["T1"])])[0]
    args = [schemathesis, "run", os.path.join(ROOT, "api-spec/openapi.yaml"), "--base-url", world.url,
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance",
            "--exclude-path", "/webhooks/stripe", "--hypothesis-max-examples", str(examples), "--hypothesis-derandomize",
            "-H", f"Authorization: Bearer {admin}"]
    log(f"== schemathesis on the OpenAPI routes ({examples} examples per operation)")
    home = tempfile.mkdtemp(prefix="fuzz-schemathesis.")
    try:
        result = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/bin:/bin", "HOME": home, "SCHEMATHESIS_TELEMETRY": "false"})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    output = result.stdout.decode("utf-8", "replace")
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|errored)", line)]
    if result.returncode != 0:
        log(output)
    log("   schemathesis: " + (summary[-1].strip("= ") if summary else f"exit {result.returncode}"))
    return result.returncode == 0


def main():
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=env("BILLINGD", os.path.join(ROOT, ".build/debug/billingd")))
    parser.add_argument("--requests", type=int, default=int(env("FUZZ_REQUESTS", "100000")))
    parser.add_argument("--seed", type=int, default=int(env("FUZZ_SEED")) if env("FUZZ_SEED") else None)
    parser.add_argument("--concurrency", type=int, default=int(env("FUZZ_CONCURRENCY", "8")))
    parser.add_argument("--timeout", type=float, default=float(env("FUZZ_TIMEOUT", "60")))
    parser.add_argument("--rss-max-ratio", type=float, default=float(env("FUZZ_RSS_MAX_RATIO", "1.5")))
    parser.add_argument("--schemathesis", type=int, default=int(env("FUZZ_SCHEMATHESIS", "1")))
    parser.add_argument("--schemathesis-examples", type=int, default=int(env("FUZZ_SCHEMATHESIS_EXAMPLES", "25")))
    parser.add_argument("--schemathesis-bin", default=env("SCHEMATHESIS", os.path.join(ROOT, ".venv/bin/schemathesis")))
    parser.add_argument("--slow", type=float, default=float(env("FUZZ_SLOW_SECONDS", "10")),
                        help="answers slower than this are listed (not a failure; FUZZ_TIMEOUT is)")
    parser.add_argument("--max-print", type=int, default=int(env("FUZZ_MAX_PRINT", "40")))
    parser.add_argument("--only", default=env("FUZZ_ONLY", ""), help="comma-separated request indices to run alone")
    parser.add_argument("--restart", type=int, default=int(env("FUZZ_RESTART", "1")),
                        help="after a crash (a failure still), start the server again and send the rest")
    parser.add_argument("--kinds", default=env("FUZZ_KINDS", ""),
                        help="only these kinds of request, comma-separated (rpc-valid, rpc-mutated, rpc-envelope, "
                             "rpc-batch, trpc, trpc-batch, encoding, huge, http, routes)")
    parser.add_argument("--keep", action="store_true", default=bool(env("FUZZ_KEEP")))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2 ** 31)
    only = [int(i) for i in args.only.split(",") if i.strip()]

    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"no billingd at {args.binary}: build it (swift build --product billingd) or set BILLINGD")
    if args.schemathesis and not only and not os.access(args.schemathesis_bin, os.X_OK):
        raise SystemExit(f"no schemathesis at {args.schemathesis_bin}: make the .venv (make test does) or set "
                         f"FUZZ_SCHEMATHESIS=0")
    with open(os.path.join(ROOT, "api-spec/openrpc.json")) as f:
        spec = json.load(f)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell starts background jobs with it ignored, and Python would keep that.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, on_signal)

    total = len(only) if only else args.requests
    log(f"== fuzz: {total} requests, seed {seed} (FUZZ_SEED={seed} repeats them), {args.concurrency} connections, "
        f"binary {args.binary}")
    world = World(args.binary, seed, args.keep)
    failed = []
    try:
        world.start()
        world.provision()
        generator = Generator(world, spec, seed, [k.strip() for k in args.kinds.split(",") if k.strip()])
        if env("FUZZ_HOLD"):
            # For reproducing by hand: the world stays up, with its tokens, until Ctrl-C.
            log(f"== FUZZ_HOLD: server {world.url}, stand-in http://{HOST}:{world.stripe_port}, base {world.base}")
            for (role, tenant), token in sorted(world.role_tokens.items(), key=str):
                log(f"   {role}{'@' + tenant if tenant else ''}: {token}")
            while world.server.poll() is None:
                time.sleep(1)
            log(f"== the server exited ({world.server.returncode})")
            log(world.crash_report())
            return 1
        stats = Stats(total, args.max_print, world, seed, args.slow)
        stats.print_failures = not only  # FUZZ_ONLY prints every request anyway
        indices = only or range(total)
        stop = threading.Event()
        cursor = [0]
        cursor_lock = threading.Lock()
        inflight = {}
        suspects = []
        fuzzer_errors = []

        def worker(wid):
            try:
                send(wid)
            except Exception:  # a bug of the fuzzer: say so, and fail the run
                import traceback
                with stats.lock:
                    fuzzer_errors.append(traceback.format_exc())
                log(f"FUZZER ERROR in worker {wid}:\n{fuzzer_errors[-1]}")

        def send(wid):
            conn = Conn(world.port, args.timeout)
            while not stop.is_set():
                with cursor_lock:
                    if cursor[0] >= total:
                        break
                    index = indices[cursor[0]]
                    cursor[0] += 1
                req = generator.make(index)
                inflight[wid] = req
                outcome = conn.exchange(req)
                if outcome.error is not None and not world.alive():
                    # The server is gone (or going: Swift's backtracer runs first): this request is a suspect, and
                    # what the others get from now on is no finding of its own.
                    stop.set()
                    with stats.lock:
                        suspects.append((req, outcome))
                    break
                inflight[wid] = None
                if only:
                    with stats.lock:
                        problems = [(k, t) for k, t in [("5xx", f"HTTP {outcome.status}")] if (outcome.status or 0) >= 500]
                        print_failure(req, outcome, problems, prefix="SENT (FUZZ_ONLY)")
                        saved = os.path.join(tempfile.gettempdir(), f"billing-fuzz-{seed}.{index}.http")
                        with open(saved, "wb") as f:
                            f.write(req.raw)
                        log(f"  its exact bytes: {saved} (the seed makes the tenant ids and the JWT secret, so they also "
                            f"work against FUZZ_SEED={seed} FUZZ_HOLD=1 for a day)")
                stats.record(req, outcome)
                if not outcome.keep:
                    conn.close()
            conn.close()

        log(f"== sending {total} requests")
        crashes = []  # (exit status, requests whose connection dropped, requests in flight, the runtime's report)
        hung = False
        while True:
            stop.clear()
            suspects.clear()
            inflight.clear()
            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(max(1, args.concurrency))]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
                if world.server.poll() is not None:
                    stop.set()
                    break
            if world.server.poll() is None and stop.is_set():
                try:
                    world.server.wait(timeout=60)  # still writing its backtrace
                except subprocess.TimeoutExpired:
                    hung = True
                    break
            if world.server.poll() is None:
                break
            status = world.server.returncode
            for t in threads:
                t.join(timeout=args.timeout)
            others = [r for r in inflight.values() if r is not None and all(r is not q for q, _ in suspects)]
            crashes.append((status, list(suspects), others, world.crash_report()))
            log(f"FAIL the server exited ({status}) after {stats.done} requests. The requests whose connection it dropped:")
            for req, outcome in suspects:
                print_failure(req, outcome, [("crash", "the connection dropped as the server went down")])
            if others:
                log("   and the requests in flight then:")
                for req in others:
                    print_failure(req, Outcome(error="in flight when the server exited"), [("crash", "in flight")])
            log(crashes[-1][3])
            if not args.restart or cursor[0] >= total:
                break
            log(f"== starting the server again (FUZZ_RESTART=1) to send the other {total - cursor[0]} requests; RSS is "
                f"measured again from its next 1,000 requests")
            world.start_server(restart=True)
            stats.restarted()
        elapsed = time.monotonic() - stats.started
        rss_after = world.rss_kib() if world.server.poll() is None else None

        schemathesis_ok = None
        if args.schemathesis and not only and world.server.poll() is None and not hung:
            schemathesis_ok = run_schemathesis(world, args.schemathesis_bin, args.schemathesis_examples)
            if world.server.poll() is not None:
                crashes.append((world.server.returncode, [], [], world.crash_report()))
                log(f"FAIL the server exited ({world.server.returncode}) during schemathesis")
                log(crashes[-1][3])

        # The report.
        log("")
        log(f"== fuzz report (seed {seed})")
        log(f"   requests answered or closed: {stats.done} of {total} in {elapsed:.1f} s ({stats.done / max(elapsed, 1e-9):.0f}/s)")
        log("   by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.labels.items())))
        log("   by status: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.statuses.items(), key=lambda kv: str(kv[0]))))
        log(f"   connections closed by the server on over-limit or malformed requests (accepted): {stats.accepted_closes}")
        if stats.slowest[1] is not None:
            log(f"   slowest answer: {stats.slowest[0]:.2f} s ({stats.slowest[1].label}, #{stats.slowest[1].index})")
        if stats.slow:
            log(f"   answers slower than {args.slow:g} s (listed, not failed): {len(stats.slow)}; the slowest:")
            for seconds, req, _ in sorted(stats.slow, key=lambda x: -x[0])[:8]:
                log(f"     {seconds:.1f} s #{req.index} [{req.label}] token={req.auth or 'none'} {len(req.raw)} bytes")
        usage = __import__("resource").getrusage(__import__("resource").RUSAGE_SELF)
        log(f"   fuzzer CPU: {usage.ru_utime + usage.ru_stime:.0f} s")
        log(f"   5xx answers: {stats.five_xx}")
        log(f"   5xx-kind errors inside 200/207 answers (-32603): {stats.internal}")
        log(f"   answers leaking internals: {stats.leaks}")
        log(f"   dropped connections / timeouts on ordinary requests: {stats.drops}")
        ratio = None
        if stats.rss_first and rss_after:
            ratio = rss_after / stats.rss_first
            log(f"   server RSS: {stats.rss_first / 1024:.1f} MiB after {stats.rss_first_at} requests, "
                f"{rss_after / 1024:.1f} MiB after {stats.done}; ratio {ratio:.2f} (limit {args.rss_max_ratio})")
        log(f"   server crashes: {len(crashes)}")
        for status, dropped, _, report in crashes:
            log(f"     exit {status}; dropped: " + (", ".join(f"#{r.index} [{r.label}]" for r, _ in dropped) or "-"))
            lines = report.splitlines()
            for line in [x for x in lines if "runtime failure" in x or "Fatal error" in x] + \
                    [x for x in lines if "/Sources/" in x][:3]:
                log(f"       {line.strip()[:200]}")
        log(f"   server: {'alive' if world.server.poll() is None else 'exited (%s)' % world.server.returncode}")
        if schemathesis_ok is not None:
            log(f"   schemathesis: {'passed' if schemathesis_ok else 'FAILED'}")
        report_causes(stats, os.path.join(world.base, "billingd.log"))

        if stats.five_xx:
            failed.append(f"{stats.five_xx} 5xx answers")
        if stats.internal:
            failed.append(f"{stats.internal} internal errors in 200/207 answers")
        if stats.leaks:
            failed.append(f"{stats.leaks} answers leaking internals")
        if stats.drops:
            failed.append(f"{stats.drops} dropped connections or timeouts")
        if crashes:
            failed.append(f"the server crashed {len(crashes)} time(s)")
        if hung:
            failed.append("the server stopped answering /healthz for 60 s")
            for req, outcome in suspects:
                print_failure(req, outcome, [("hang", "the connection dropped, then /healthz went unanswered")])
        elif stats.done < total and not crashes:
            failed.append(f"only {stats.done} of {total} requests were sent")
        if ratio is not None and ratio > args.rss_max_ratio and not only:
            failed.append(f"RSS grew {ratio:.2f}x (limit {args.rss_max_ratio}x)")
        if schemathesis_ok is False:
            failed.append("schemathesis failed")
        if fuzzer_errors:
            failed.append(f"{len(fuzzer_errors)} errors of the fuzzer itself")
        if failed:
            world.save_logs = True
    except KeyboardInterrupt as interruption:
        log(f"\n== interrupted ({interruption}); cleaning up")
        failed.append("interrupted")
    finally:
        world.stop()
    if failed:
        log("FUZZ FAILED: " + "; ".join(failed) + f" (FUZZ_SEED={seed})")
        return 1
    log(f"FUZZ PASSED (FUZZ_SEED={seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
