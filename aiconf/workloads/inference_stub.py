"""A TEST inference server: OpenAI-shaped answers without a model, for checks that need an "AI service" to talk to.

Not a model server. It answers the OpenAI endpoints the checks use with canned text and says plainly who answered:
every completion carries the backend's ``--version``, its pod name (``$POD_NAME`` or the host name), its ``--role``
and the request id, in the JSON body (``aiconf`` object) and in response headers (``X-Aiconf-Version``,
``X-Aiconf-Pod``, ``X-Aiconf-Role``, ``X-Request-Id``). That lets a check count which backend a gateway chose.

Endpoints:

- ``POST /v1/completions``, ``POST /v1/chat/completions``: a completion (``model`` echoed from the body, else
  ``--model``); ``--latency-ms`` adds a fixed service time so latency histograms have something to show.
- ``GET /v1/models``: the one model. ``GET /healthz``: ``ok``. ``GET /version``: the version string.
- ``GET /metrics``: Prometheus text format 0.0.4, written by hand because the container image is stdlib-only:
  ``aiconf_requests_total{model,version,role,code}`` (counter), ``aiconf_request_duration_seconds{model,version,role}``
  (histogram), ``aiconf_requests_running`` (gauge, the queue depth an endpoint picker would read),
  ``aiconf_prompt_tokens_total`` / ``aiconf_generation_tokens_total`` (counters; "tokens" are whitespace-split words),
  ``aiconf_inference_stub_info{version,role,pod}`` (says which program this is). Only completion requests count.
  With ``--queue-depth N`` / ``--kv-cache-usage F`` it also advertises the gauges GAIE's endpoint picker scrapes from
  vLLM by default: ``vllm:num_requests_waiting`` (N), ``vllm:num_requests_running``,
  ``vllm:kv_cache_usage_perc`` and its older name ``vllm:gpu_cache_usage_perc`` (F, 0..1), ``vllm:lora_requests_info``
  (no adapters) and ``vllm:cache_config_info``. The numbers are set, not measured: a TEST knob for routing tests.
- ``GET /aiconf/advertise?queue_depth=N&kv_cache_usage=F``: changes the advertised values (a GET so that a check can
  reach it through the API server's pod proxy, which the toolkit may only GET); answers the values now advertised.

With ``--prefill-url URL`` (a decode role) each completion is first POSTed, same body and ``X-Request-Id``, to
``URL`` + the request's path, the way a disaggregated deployment hands a request from prefill to decode; the answer
names the prefill pod (``aiconf.prefill_pod``), and a failed hand-over is a 502.

Every completion request is logged as one JSON line on stdout (``{"event": "request", "request_id": ..., ...}``) so a
check can find a request id in the logs of the pods that handled it.

Run: ``python3 -m aiconf.workloads.inference_stub --port 8000 --version v1 --model aiconf-demo`` (listens on
``--address``, default 0.0.0.0 inside a pod; use 127.0.0.1 on a host). SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Histogram bucket upper bounds (seconds), as AI servers use for end-to-end latency.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMPLETION_PATHS = ("/v1/completions", "/v1/chat/completions")
MAX_BODY = 1 << 20


def _esc(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Stats:
    """Counters and the latency histogram, guarded by one lock (the server is threaded)."""

    def __init__(self, version: str, role: str, pod: str):
        self.version, self.role, self.pod = version, role, pod
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}  # (model, code) -> count
        self.buckets: dict[str, list[int]] = {}  # model -> cumulative counts per bucket (+Inf last)
        self.sums: dict[str, float] = {}
        self.prompt_tokens: dict[str, int] = {}
        self.generation_tokens: dict[str, int] = {}
        self.running = 0
        #: Advertised vLLM-style load (None: not advertised); set by --queue-depth/--kv-cache-usage or /aiconf/advertise.
        self.queue_depth: int | None = None
        self.kv_cache_usage: float | None = None

    def advertise(self, queue_depth: int | None = None, kv_cache_usage: float | None = None) -> dict:
        """Set the advertised queue depth and/or KV-cache use; returns what is advertised now."""
        with self.lock:
            if queue_depth is not None:
                self.queue_depth = max(0, int(queue_depth))
            if kv_cache_usage is not None:
                self.kv_cache_usage = min(1.0, max(0.0, float(kv_cache_usage)))
            return {"queue_depth": self.queue_depth, "kv_cache_usage": self.kv_cache_usage}

    def started(self) -> None:
        with self.lock:
            self.running += 1

    def finished(self, model: str, code: int, seconds: float, prompt_tokens: int, generation_tokens: int) -> None:
        with self.lock:
            self.running -= 1
            key = (model, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1
            counts = self.buckets.setdefault(model, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[model] = self.sums.get(model, 0.0) + seconds
            self.prompt_tokens[model] = self.prompt_tokens.get(model, 0) + prompt_tokens
            self.generation_tokens[model] = self.generation_tokens.get(model, 0) + generation_tokens

    def exposition(self) -> str:
        base = f'version="{_esc(self.version)}",role="{_esc(self.role)}"'
        out = [
            "# HELP aiconf_inference_stub_info aiconf's TEST inference server (no model; canned answers).",
            "# TYPE aiconf_inference_stub_info gauge",
            f'aiconf_inference_stub_info{{{base},pod="{_esc(self.pod)}"}} 1',
        ]
        with self.lock:
            out += [
                "# HELP aiconf_requests_total Completion requests answered.",
                "# TYPE aiconf_requests_total counter",
            ]
            for (model, code), n in sorted(self.requests.items()):
                out.append(f'aiconf_requests_total{{model="{_esc(model)}",{base},code="{code}"}} {n}')
            out += [
                "# HELP aiconf_request_duration_seconds Completion request service time.",
                "# TYPE aiconf_request_duration_seconds histogram",
            ]
            for model, counts in sorted(self.buckets.items()):
                labels = f'model="{_esc(model)}",{base}'
                for bound, n in zip((*map(_fmt, BUCKETS), "+Inf"), counts, strict=True):
                    out.append(f'aiconf_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}')
                out.append(f"aiconf_request_duration_seconds_count{{{labels}}} {counts[-1]}")
                out.append(f"aiconf_request_duration_seconds_sum{{{labels}}} {self.sums[model]!r}")
            for name, values in (("prompt_tokens", self.prompt_tokens), ("generation_tokens", self.generation_tokens)):
                out += [
                    f"# HELP aiconf_{name}_total Whitespace-split words counted as {name.replace('_', ' ')}.",
                    f"# TYPE aiconf_{name}_total counter",
                ]
                out += [f'aiconf_{name}_total{{model="{_esc(m)}",{base}}} {n}' for m, n in sorted(values.items())]
            out += [
                "# HELP aiconf_requests_running Completion requests being served now (queue depth).",
                "# TYPE aiconf_requests_running gauge",
                f"aiconf_requests_running{{{base}}} {self.running}",
            ]
            if self.queue_depth is not None or self.kv_cache_usage is not None:
                out += self._vllm_gauges()
        return "\n".join(out) + "\n"

    def _vllm_gauges(self) -> list[str]:
        """The gauges an endpoint picker reads from vLLM (names as vLLM exposes them); called with the lock held."""
        queued = self.queue_depth or 0
        kv = self.kv_cache_usage or 0.0
        gauges = [
            ("vllm:num_requests_waiting", "Requests waiting (advertised by --queue-depth).", queued),
            ("vllm:num_requests_running", "Requests running now.", self.running),
            ("vllm:kv_cache_usage_perc", "KV-cache use, 0..1 (advertised by --kv-cache-usage).", kv),
            ("vllm:gpu_cache_usage_perc", "KV-cache use, 0..1 (vLLM's older name).", kv),
        ]
        out = []
        for name, text, value in gauges:
            out += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {_fmt(value)}"]
        out += [
            "# HELP vllm:lora_requests_info LoRA adapters (none).",
            "# TYPE vllm:lora_requests_info gauge",
            f'vllm:lora_requests_info{{max_lora="1",running_lora_adapters="",waiting_lora_adapters=""}} {_fmt(time.time())}',
            "# HELP vllm:cache_config_info Cache configuration (nominal).",
            "# TYPE vllm:cache_config_info gauge",
            'vllm:cache_config_info{block_size="16",num_gpu_blocks="1024"} 1',
        ]
        return out


def _prompt_text(body: dict) -> str:
    if isinstance(body.get("messages"), list):
        return " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


def _hand_over(prefill_url: str, path: str, raw: bytes, request_id: str) -> tuple[int, str]:
    """POST the request to the prefill server; (status, its pod name)."""
    url = urllib.parse.urlsplit(prefill_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    try:
        conn.request(
            "POST",
            url.path.rstrip("/") + path,
            body=raw,
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Aiconf-Pod") or ""
    finally:
        conn.close()


def make_server(
    address: str,
    port: int,
    *,
    version: str,
    model: str,
    role: str = "serve",
    latency_ms: float = 0.0,
    pod: str | None = None,
    log=None,
    prefill_url: str = "",
    queue_depth: int | None = None,
    kv_cache_usage: float | None = None,
) -> ThreadingHTTPServer:
    """The HTTP server (not started): ``server.serve_forever()`` serves; ``server.stats`` holds the counters."""
    pod = pod or os.environ.get("POD_NAME") or socket.gethostname()
    stats = Stats(version, role, pod)
    stats.advertise(queue_depth, kv_cache_usage)
    log = log or (lambda line: print(line, flush=True))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a load loop does not pay a TCP handshake per request
        # Headers and body leave in one write (flushed after each request): two small writes on a kept-alive
        # connection meet the client's delayed ACK and stall ~40 ms.
        wbufsize = -1

        def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, doc: dict, headers: dict[str, str] | None = None) -> None:
            self._send(code, json.dumps(doc).encode(), "application/json", headers)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/metrics", "/metrics/"):
                self._send(200, stats.exposition().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path in ("/healthz", "/health", "/ready"):
                self._send(200, b"ok\n", "text/plain")
            elif path == "/version":
                self._send(200, f"{version}\n".encode(), "text/plain", {"X-Aiconf-Version": version})
            elif path == "/aiconf/advertise":
                query = urllib.parse.parse_qs(self.path.partition("?")[2])
                try:
                    depth = int(query["queue_depth"][0]) if "queue_depth" in query else None
                    kv = float(query["kv_cache_usage"][0]) if "kv_cache_usage" in query else None
                except ValueError as e:
                    self._send(400, f"bad value: {e}\n".encode(), "text/plain")
                    return
                self._json(200, {"pod": pod, **stats.advertise(depth, kv)})
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "aiconf"}]})
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self):
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
            if path not in COMPLETION_PATHS:
                self._send(404, b"not found\n", "text/plain")
                return
            started = time.monotonic()
            stats.started()
            request_id = self.headers.get("X-Request-Id") or f"aiconf-{uuid.uuid4().hex[:16]}"
            code, doc, headers, served_model, tokens = self._complete(path, raw, request_id)
            # Counted and logged before the answer leaves: a client holding the answer knows both include it.
            seconds = time.monotonic() - started
            stats.finished(served_model, code, seconds, *tokens)
            log(
                json.dumps(
                    {
                        "event": "request",
                        "request_id": request_id,
                        "path": path,
                        "model": served_model,
                        "version": version,
                        "role": role,
                        "pod": pod,
                        "code": code,
                        "seconds": round(seconds, 6),
                    }
                )
            )
            self._json(code, doc, {**headers, "X-Request-Id": request_id})

        def _complete(self, path: str, raw: bytes, request_id: str):
            """(status, answer, extra headers, model, (prompt tokens, generated tokens)) for one completion."""
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise TypeError("body is not a JSON object")
            except (ValueError, TypeError) as e:
                error = {"message": f"bad request body: {e}", "type": "invalid_request_error"}
                return 400, {"error": error}, {}, model, (0, 0)
            served_model = str(body.get("model") or model)
            prefill_pod = None
            if prefill_url:
                try:
                    status, prefill_pod = _hand_over(prefill_url, path, raw, request_id)
                except OSError as e:
                    status, prefill_pod = 0, f"unreachable: {e}"
                if status != 200:
                    error = {
                        "message": f"prefill at {prefill_url} answered {status or prefill_pod}",
                        "type": "upstream_error",
                    }
                    return 502, {"error": error}, {}, served_model, (0, 0)
            if latency_ms > 0:
                time.sleep(latency_ms / 1000.0)
            prompt_tokens = len(_prompt_text(body).split())
            text = f"canned answer from {version} ({role})"
            generation_tokens = len(text.split())
            chat = path.endswith("/chat/completions")
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "stop"}
            )
            who = {"version": version, "pod": pod, "role": role, "request_id": request_id}
            if prefill_pod is not None:
                who["prefill_pod"] = prefill_pod
            answer = {
                "id": request_id,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": served_model,
                "system_fingerprint": version,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": generation_tokens,
                    "total_tokens": prompt_tokens + generation_tokens,
                },
                "aiconf": who,
            }
            headers = {"X-Aiconf-Version": version, "X-Aiconf-Pod": pod, "X-Aiconf-Role": role}
            return 200, answer, headers, served_model, (prompt_tokens, generation_tokens)

        def log_message(self, fmt, *a):  # the JSON line above is the access log
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    server.stats = stats
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m aiconf.workloads.inference_stub", description=__doc__.split("\n")[0])
    ap.add_argument("--address", default="0.0.0.0", help="listen address (default 0.0.0.0: inside a pod)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument(
        "--version",
        default=os.environ.get("AICONF_BACKEND_VERSION", "v1"),
        help="the backend version it reports (default $AICONF_BACKEND_VERSION or v1)",
    )
    ap.add_argument("--model", default="aiconf-demo", help="model name for /v1/models and answers without one")
    ap.add_argument("--role", default="serve", help="role it reports, e.g. serve, prefill, decode")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="fixed service time added to each completion")
    ap.add_argument("--prefill-url", default="", help="hand each completion to this prefill server first (decode)")
    ap.add_argument(
        "--queue-depth", type=int, default=None, help="advertise vLLM gauges with this many waiting requests"
    )
    ap.add_argument(
        "--kv-cache-usage", type=float, default=None, help="advertise vLLM gauges with this KV-cache use (0..1)"
    )
    args = ap.parse_args(argv)
    server = make_server(
        args.address,
        args.port,
        version=args.version,
        model=args.model,
        role=args.role,
        latency_ms=args.latency_ms,
        prefill_url=args.prefill_url,
        queue_depth=args.queue_depth,
        kv_cache_usage=args.kv_cache_usage,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(
        json.dumps(
            {
                "event": "ready",
                "address": args.address,
                "port": server.server_address[1],
                "version": args.version,
                "model": args.model,
                "role": args.role,
            }
        ),
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
