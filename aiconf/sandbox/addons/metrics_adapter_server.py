"""A small ``custom.metrics.k8s.io/v1beta2`` server for the sandbox: pod metrics taken from pod annotations.

A pod annotated ``metrics.aiconf.io/<metric>: "<value>"`` reports ``<value>`` for metric ``<metric>``; a check
drives a workload metric (for an HPA with a ``Pods`` metric) by re-annotating its pods. Values are read from the
API on every request, so a change is visible to the next HPA sync.

Served paths (everything the HPA controller and the aggregator's availability check use):

* ``/apis/custom.metrics.k8s.io`` and ``/apis/custom.metrics.k8s.io/v1beta2`` (discovery; one ``pods/<metric>``
  resource per annotation name seen on any pod);
* ``/apis/custom.metrics.k8s.io/v1beta2/namespaces/<ns>/pods/<name|*>/<metric>[?labelSelector=...]``
  → ``MetricValueList``;
* ``/healthz``, ``/readyz``, ``/livez`` (plain ``ok``; no client certificate needed).

Authentication, simplified for the sandbox: at start the server reads ConfigMap
``kube-system/extension-apiserver-authentication`` (published by kube-apiserver). When it holds
``requestheader-client-ca-file``, ``/apis/...`` requests must come with a client certificate signed by that CA
(the API server's ``--proxy-client-cert-file``) and, when ``requestheader-allowed-names`` is non-empty, a CN from
that list; otherwise any TLS client is served. There is no authorization step (no SubjectAccessReview): whoever
the aggregator lets through may read every pod metric.

Run: ``python -m aiconf.sandbox.addons.metrics_adapter_server --kubeconfig KC --port P --cert CRT --key KEY``
(it binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The constants live in the add-on module so that importing the add-on package never imports this one (running it
# with ``python -m`` would then warn that it was imported twice).
from aiconf.sandbox.addons.custom_metrics import ANNOTATION_PREFIX, GROUP, VERSION

WINDOW_SECONDS = 60

log = logging.getLogger("aiconf.metrics-adapter")

_UNITS = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip


def parse_value(text: str) -> float:
    """``"42"``, ``"0.5"``, ``"500m"``, ``"2k"`` → a number; ValueError otherwise."""
    s = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if s.endswith(unit) and s[: -len(unit)]:
            return float(s[: -len(unit)]) * _UNITS[unit]
    return float(s)


def format_quantity(value: float) -> str:
    """A number as a Kubernetes quantity string (integers plain, fractions in milli-units)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class PodMetrics:
    """Reads pod annotations through the Kubernetes API (the official Python client)."""

    def __init__(self, kubeconfig: str):
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api_client)

    def metric_names(self) -> list[str]:
        names: set[str] = set()
        for pod in self.core.list_pod_for_all_namespaces(_request_timeout=10).items:
            for key in pod.metadata.annotations or {}:
                if key.startswith(ANNOTATION_PREFIX) and len(key) > len(ANNOTATION_PREFIX):
                    names.add(key[len(ANNOTATION_PREFIX) :])
        return sorted(names)

    def values(self, namespace: str, name: str, metric: str, label_selector: str | None) -> list[dict] | None:
        """MetricValue items; None when a single named pod does not exist or lacks the metric."""
        key = ANNOTATION_PREFIX + metric
        if name != "*":
            from kubernetes.client.exceptions import ApiException

            try:
                pods = [self.core.read_namespaced_pod(name, namespace, _request_timeout=10)]
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        else:
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=label_selector or None, _request_timeout=10
            ).items
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        items = []
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None or (
                pod.status and pod.status.phase in ("Succeeded", "Failed")
            ):
                continue
            raw = (pod.metadata.annotations or {}).get(key)
            if raw is None:
                continue
            try:
                value = parse_value(raw)
            except ValueError:
                log.warning(
                    "pod %s/%s: annotation %s=%r is not a number; skipped", namespace, pod.metadata.name, key, raw
                )
                continue
            items.append(
                {
                    "describedObject": {
                        "kind": "Pod",
                        "namespace": namespace,
                        "name": pod.metadata.name,
                        "apiVersion": "/v1",
                    },
                    "metric": {"name": metric},
                    "timestamp": now,
                    "windowSeconds": WINDOW_SECONDS,
                    "value": format_quantity(value),
                }
            )
        if name != "*" and not items:
            return None
        return items


_METRIC_PATH = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([^/]+)/([^/]+)/([^/]+)/([^/]+)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AdapterServer

    def log_message(self, fmt: str, *args) -> None:  # route http.server's access log to logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, code: int, body: dict | str) -> None:
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authenticated(self) -> bool:
        if self.server.client_ca is None:
            return True
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            return False
        if not self.server.allowed_names:
            return True
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        return cn in self.server.allowed_names

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, "ok")
        if not path.startswith("/apis"):
            return self._send(404, status(404, "NotFound", f"the server could not find {path}"))
        if not self._authenticated():
            return self._send(
                401, status(401, "Unauthorized", "a client certificate from the request-header CA is required")
            )
        try:
            return self._api(path, urllib.parse.parse_qs(url.query))
        except Exception as e:
            log.exception("GET %s failed", self.path)
            return self._send(500, status(500, "InternalError", f"{type(e).__name__}: {e}"))

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        gv = f"{GROUP}/{VERSION}"
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group()]})
        if path == f"/apis/{GROUP}":
            return self._send(200, self._group())
        if path == f"/apis/{gv}":
            resources = [
                {
                    "name": f"pods/{m}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                }
                for m in self.server.metrics.metric_names()
            ]
            return self._send(
                200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
            )
        m = _METRIC_PATH.match(path)
        if not m:
            return self._send(404, status(404, "NotFound", f"the server could not find {path}"))
        namespace, resource, name, metric = (urllib.parse.unquote(g) for g in m.groups())
        if resource != "pods":
            return self._send(404, status(404, "NotFound", f"only pod metrics are served, not {resource}"))
        selector = (query.get("labelSelector") or [None])[0]
        items = self.server.metrics.values(namespace, name, metric, selector)
        if items is None:
            return self._send(
                404, status(404, "NotFound", f"the server could not find the metric {metric} for pods {name}")
            )
        return self._send(200, {"kind": "MetricValueList", "apiVersion": gv, "metadata": {}, "items": items})

    @staticmethod
    def _group() -> dict:
        gv = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
        return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


class AdapterServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self, port: int, metrics: PodMetrics, tls: ssl.SSLContext, client_ca: str | None, allowed_names: list[str]
    ):
        super().__init__(("127.0.0.1", port), Handler)
        self.metrics = metrics
        self.tls = tls
        self.client_ca = client_ca
        self.allowed_names = allowed_names

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs in the request's own thread, so a slow client never blocks accept().
        request.settimeout(30)
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            super().finish_request(tls_sock, client_address)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass


def request_header_auth(kubeconfig: str) -> tuple[str | None, list[str]]:
    """(request-header client CA PEM or None, allowed CNs) from the API server's published ConfigMap."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    try:
        cm = core.read_namespaced_config_map("extension-apiserver-authentication", "kube-system", _request_timeout=10)
    except ApiException as e:
        log.warning(
            "cannot read kube-system/extension-apiserver-authentication (%s); serving without client auth", e.status
        )
        return None, []
    data = cm.data or {}
    ca = data.get("requestheader-client-ca-file")
    names = json.loads(data.get("requestheader-allowed-names") or "[]")
    return ca, names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="metrics_adapter_server", description=__doc__.split("\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--port", type=int, required=True, help="TLS port on 127.0.0.1")
    ap.add_argument("--cert", required=True, help="serving certificate (PEM)")
    ap.add_argument("--key", required=True, help="serving key (PEM)")
    ap.add_argument("--no-client-auth", action="store_true", help="serve any TLS client (no request-header CA check)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )

    client_ca, allowed = (None, []) if args.no_client_auth else request_header_auth(args.kubeconfig)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.load_verify_locations(cadata=client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        log.info(
            "client certificates from the request-header CA are required on /apis (allowed names: %s)", allowed or "any"
        )
    else:
        log.info("serving without client authentication")
    server = AdapterServer(args.port, PodMetrics(args.kubeconfig), ctx, client_ca, allowed)
    log.info("serving %s/%s on https://127.0.0.1:%d", GROUP, VERSION, args.port)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
