"""A real Gateway API implementation for the real node: Traefik v3 (Kubernetes Gateway provider) on 127.0.0.1.

Traefik watches GatewayClasses, Gateways and HTTPRoutes, writes their status (GatewayClass ``Accepted``, Gateway
``Programmed`` with address ``127.0.0.1``, HTTPRoute ``Accepted``/``ResolvedRefs``) and proxies real HTTP from
its entryPoint on ``127.0.0.1:<port>`` straight to pod IPs taken from EndpointSlices, with weighted round-robin
across ``backendRefs`` (the traffic split) and the Gateway API's header/path/method/query matches. Why Traefik and
not Envoy Gateway: docs/sandbox-gateway.md.

Wiring (files under ``state_dir/traefik/``; ports recorded in ``info.json``):

* **Binary**: ``github.com/traefik/traefik/v3/cmd/traefik`` :data:`VERSION` built through a wrapper module
  (:data:`TRAEFIK`): upstream's two ``replace`` lines to the containous forks and its ``exclude`` are copied, and
  its local ``replace github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext`` (a nested module the
  module zip does not carry) points at a stub with the two empty types upstream's file declares.
* **Process** ``traefik``: static configuration in ``traefik.yaml``: entryPoint ``web`` on ``127.0.0.1:<port>``
  (each Gateway listener port must equal an entryPoint port: Gateways of class :data:`GATEWAY_CLASS` use that
  port), entryPoint ``traefik`` on ``127.0.0.1:<port>`` for ``/ping``, the read-only ``/api/...`` (routers,
  services and their servers as Traefik sees them) and ``/metrics`` (Prometheus format), provider ``kubernetesGateway`` with
  ``statusAddress.ip: 127.0.0.1``; version checks and anonymous usage reports off (nothing leaves the machine).
  It reads ``KUBECONFIG`` = ``state_dir/traefik/kubeconfig``, which points at the API view below, never at the API
  server itself.
* **Process** ``traefik-api-view`` (``python -m aiconf.sandbox.addons.traefik api-view``): the network rule made
  structural. A small TLS proxy on ``127.0.0.1:<port>`` in front of the API server (cert from the cluster CA; it
  accepts only the ``aiconf-traefik`` client certificate and calls the API server with that same identity, so
  RBAC applies unchanged). Every request passes through untouched except EndpointSlice reads and watches, whose
  endpoints are filtered: an endpoint is kept only when all its addresses lie in the real node's pod CIDR and its
  ``nodeName`` (when set) is the real node. Traefik therefore never learns a kwok fake pod IP (10.99.x.x) or any
  other address, so no route can send a packet there; a Service whose pods are all on kwok nodes has no servers
  (Traefik answers 503). Services lose Traefik's ``traefik.io/service.nativelb`` annotation in the view, so
  Traefik never switches to dialling a ClusterIP either. Events it cannot parse are dropped (fail closed). The
  host's ``unreachable`` route for the kwok range stays as a second fence.
* **RBAC**: user ``aiconf-traefik`` gets upstream's Gateway-provider ClusterRole (read Services, EndpointSlices,
  Secrets, ConfigMaps, Namespaces and Gateway API objects; write Gateway API status).
* **Objects**: GatewayClass :data:`GATEWAY_CLASS` (``controllerName: traefik.io/gateway-controller``) and a shared
  Gateway :data:`GATEWAY_NAMESPACE`/:data:`GATEWAY_NAME` with one HTTP listener on the ``web`` port that accepts
  routes from every namespace. The Gateway API CRDs are applied first (idempotent; normally the ``gateway-api``
  add-on did it).
* ``wait_ready``: GatewayClass ``Accepted`` and the Gateway ``Programmed`` with address ``127.0.0.1``.

Without a real node, :func:`start` records why in ``info.json`` and starts nothing (no pod can receive traffic),
so it is safe as a default add-on.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import ipaddress
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from aiconf.sandbox import pki
from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons import gatewayapi
from aiconf.sandbox.addons._common import (
    addon_dir, http_ok, kube_json, namespace_doc, read_info, tcp_open, wait_for, write_json,
)
from aiconf.sandbox.addons.prometheus import apiserver_url, real_node_scope, say
from aiconf.sandbox.gobuild import GoComponent

NAME = "traefik"
VERSION = "v3.7.9"
CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_CLASS = "aiconf-traefik"
GATEWAY_NAMESPACE = "aiconf-gateway"
GATEWAY_NAME = "aiconf-gateway"
USER = "aiconf-traefik"

TRAEFIK = GoComponent(
    name="traefik",
    module="github.com/traefik/traefik/v3",
    version=VERSION,
    packages=("github.com/traefik/traefik/v3/cmd/traefik",),
    # Copied from upstream's go.mod (v3.7.9); the local ext replace points at the stub below.
    extra_go_mod="""
replace github.com/traefik/traefik/dynamic/ext => ./ext

replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
""",
    extra_files={
        "ext/go.mod": "module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24\n",
        "ext/ext.go": (
            "// Package ext is the (empty) extension point of Traefik's dynamic configuration: upstream's\n"
            "// pkg/config/dynamic/ext, a nested module that the module zip does not carry.\n"
            "package ext\n\n// HTTP extends dynamic.HTTPConfiguration.\ntype HTTP struct{}\n\n"
            "// Router extends dynamic.Router.\ntype Router struct{}\n"
        ),
    },
    ldflags=(f"-X github.com/traefik/traefik/v3/pkg/version.Version={VERSION}",),
)


# --- objects and configuration (pure data) ---------------------------------------------------------------------


def rbac(user: str = USER) -> list[dict]:
    """Upstream's ClusterRole for the Kubernetes Gateway provider (Traefik's Helm chart), bound to ``user``."""
    gw = "gateway.networking.k8s.io"
    routes = [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tcproutes",
        "tlsroutes",
        "udproutes",
        "referencegrants",
        "backendtlspolicies",
        "listenersets",
    ]
    labels = {"app.kubernetes.io/managed-by": "aiconf-sandbox"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": user, "labels": labels},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "services", "secrets", "configmaps"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [gw], "resources": routes, "verbs": ["get", "list", "watch"]},
                {"apiGroups": [gw], "resources": [f"{r}/status" for r in routes], "verbs": ["update", "patch"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def gateway_objects(web_port: int) -> list[dict]:
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {
                "controllerName": CONTROLLER,
                "description": "Traefik on 127.0.0.1 routing to real-node pods",
            },
        },
        namespace_doc(GATEWAY_NAMESPACE),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": web_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def static_config(web_port: int, admin_port: int) -> dict:
    """Traefik's static configuration (JSON is YAML; Traefik reads ``.yaml``)."""
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{web_port}"},
            "traefik": {"address": f"127.0.0.1:{admin_port}"},
        },
        "ping": {"entryPoint": "traefik"},
        # The read-only API (/api/http/routers, /api/http/services) on the loopback-only "traefik" entryPoint.
        "api": {"insecure": True, "dashboard": False},
        "metrics": {"prometheus": {"entryPoint": "traefik", "addServicesLabels": True, "addRoutersLabels": True}},
        "providers": {"kubernetesGateway": {"statusAddress": {"ip": "127.0.0.1"}, "throttleDuration": "1s"}},
        "log": {"level": "INFO"},
    }


# --- the EndpointSlice-filtering API view ------------------------------------------------------------------------

_SLICE_PATH = re.compile(r"^/apis/discovery\.k8s\.io/v1(beta1)?/(namespaces/[^/]+/)?endpointslices(/[^/]+)?$")
_SERVICE_PATH = re.compile(r"^/api/v1/(namespaces/[^/]+/)?services(/[^/]+)?$")
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
}
HIDDEN_ANNOTATION = "sandbox.aiconf.io/endpoints-hidden"
#: Traefik's per-Service switch to dial the ClusterIP instead of the endpoints; the view removes it.
NATIVE_LB_ANNOTATION = "traefik.io/service.nativelb"
NATIVE_LB_IGNORED = "sandbox.aiconf.io/nativelb-ignored"


def filtered_kind(path: str) -> str | None:
    """The kind whose answers the view filters at this API path (None: relayed untouched)."""
    if _SLICE_PATH.match(path):
        return "EndpointSlice"
    if _SERVICE_PATH.match(path):
        return "Service"
    return None


def endpoint_allowed(endpoint: dict, network, node: str) -> bool:
    """An EndpointSlice endpoint the gateway may use: every address in ``network``, on ``node`` when it says."""
    addresses = endpoint.get("addresses") or []
    if not addresses:
        return False
    for a in addresses:
        try:
            if ipaddress.ip_address(a) not in network:
                return False
        except ValueError:
            return False
    return endpoint.get("nodeName") in (None, "", node)


def filter_slice(obj: dict, network, node: str) -> dict:
    """``obj`` (an EndpointSlice) with only the endpoints :func:`endpoint_allowed` keeps (in place)."""
    if obj.get("kind") not in (None, "EndpointSlice") or not isinstance(obj.get("endpoints"), list):
        if obj.get("kind") in (None, "EndpointSlice") and obj.get("endpoints") is not None:
            obj["endpoints"] = []  # not a list: malformed, keep nothing
        return obj
    kept = [e for e in obj["endpoints"] if endpoint_allowed(e, network, node)]
    hidden = len(obj["endpoints"]) - len(kept)
    obj["endpoints"] = kept
    if hidden:
        obj.setdefault("metadata", {}).setdefault("annotations", {})[HIDDEN_ANNOTATION] = str(hidden)
    return obj


def filter_service(obj: dict) -> dict:
    """``obj`` (a Service) without Traefik's ``nativelb`` annotation, so Traefik keeps to the (filtered) endpoints
    and never dials a ClusterIP (in place)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    dropped = [k for k in annotations if k.lower() == NATIVE_LB_ANNOTATION]
    for k in dropped:
        del annotations[k]
    if dropped:
        annotations[NATIVE_LB_IGNORED] = "true"
    return obj


def _filter_object(obj: Any, kind: str, network, node: str) -> Any:
    if not isinstance(obj, dict):
        return obj
    if kind == "EndpointSlice":
        return filter_slice(obj, network, node)
    if kind == "Service":
        return filter_service(obj)
    return obj


def filter_document(doc: dict, network, node: str, kind: str = "EndpointSlice") -> dict:
    """Filter an object, a list or a watch event of EndpointSlices or Services (``kind`` names the kind of an
    object that does not say; anything else passes unchanged)."""
    doc_kind = doc.get("kind") or ""
    if doc_kind.endswith("List") and isinstance(doc.get("items"), list):
        item_kind = doc_kind[: -len("List")] or kind
        doc["items"] = [_filter_object(i, i.get("kind") or item_kind, network, node) for i in doc["items"]]
        return doc
    if "type" in doc and "object" in doc:  # a watch event (BOOKMARK and ERROR objects pass unchanged)
        obj = doc["object"]
        if isinstance(obj, dict):
            _filter_object(obj, obj.get("kind") or kind, network, node)
        return doc
    return _filter_object(doc, doc_kind or kind, network, node)


class _ApiView(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        upstream_ctx: ssl.SSLContext,
        server_ctx: ssl.SSLContext,
        allowed_cn: str,
        network,
        node: str,
    ):
        super().__init__(listen, _ApiViewHandler)
        self.upstream, self.upstream_ctx, self.server_ctx = upstream, upstream_ctx, server_ctx
        self.allowed_cn, self.network, self.node = allowed_cn, network, node

    def handle_error(self, request, client_address) -> None:
        """One line per failed connection (a readiness probe's bare TCP connect ends in an SSL EOF: not logged)."""
        err = sys.exc_info()[1]
        if isinstance(err, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
            return
        print(
            f"{time.strftime('%H:%M:%S')} connection from {client_address[0]}:{client_address[1]} failed: "
            f"{type(err).__name__}: {err}",
            flush=True,
        )

    def get_request(self):
        sock, addr = super().get_request()
        return self.server_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class _ApiViewHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ApiView

    def setup(self) -> None:
        self.request.settimeout(30)
        self.request.do_handshake()
        cert = self.request.getpeercert() or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        if cn != self.server.allowed_cn:
            raise ConnectionAbortedError(f"client certificate CN {cn!r} is not {self.server.allowed_cn!r}")
        self.request.settimeout(None)
        self._conn: http.client.HTTPSConnection | None = None
        super().setup()

    def log_message(self, fmt: str, *args) -> None:  # only errors are logged (log_error)
        pass

    def _upstream(self, timeout_s: float | None) -> http.client.HTTPSConnection:
        if self._conn is None:
            host, port = self.server.upstream
            self._conn = http.client.HTTPSConnection(host, port, context=self.server.upstream_ctx)
        self._conn.timeout = timeout_s
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout_s)
        return self._conn

    def _forward(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(parsed.query)
        watch = params.get("watch", ["false"])[0] in ("true", "1")
        kind = filtered_kind(parsed.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if kind:  # the filter reads plain JSON (never protobuf, CBOR or gzip)
            headers = {k: v for k, v in headers.items() if k.lower() not in ("accept", "accept-encoding")}
            headers["Accept"] = "application/json"
        # Watches end when the API server's timeoutSeconds (5-10 min for informers) runs out; bound them anyway.
        timeout_s = 900.0 if watch else 60.0
        for attempt in (1, 2):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._upstream(timeout_s)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._conn = None
                # A kept-alive connection the API server closed while idle: the request never reached it; retry
                # once on a fresh connection.
                stale = isinstance(e, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
                if attempt == 1 and reused and stale:
                    continue
                self.send_error(502, f"API server unreachable: {e}")
                return
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        if watch and resp.status == 200:
            self.send_response(resp.status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._stream(resp, kind)
            finally:
                conn.close()
                self._conn = None
                self.close_connection = True
            return
        data = resp.read()
        if kind and resp.status == 200:
            try:
                doc = filter_document(json.loads(data), self.server.network, self.server.node, kind)
                data = json.dumps(doc).encode()
            except ValueError:
                self.send_error(502, f"{kind} answer is not JSON; refused (fail closed)")
                return
        self.send_response(resp.status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if resp.will_close:
            conn.close()
            self._conn = None

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, resp: http.client.HTTPResponse, kind: str | None) -> None:
        """Relay a watch as it comes. EndpointSlice and Service watches are plain JSON lines (no gzip was asked
        for) and each event is filtered; any other watch is relayed byte for byte (it may be gzip-compressed)."""
        try:
            while True:
                if not kind:
                    data = resp.read1(65536)
                    if not data:
                        break
                    self._chunk(data)
                    continue
                line = resp.readline()
                if not line:
                    break
                if line.strip():
                    try:
                        event = filter_document(json.loads(line), self.server.network, self.server.node, kind)
                    except ValueError:
                        self.log_error("dropped an unparseable %s watch line (%d bytes)", kind, len(line))
                        continue
                    line = json.dumps(event).encode() + b"\n"
                self._chunk(line)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, http.client.HTTPException):
            pass  # either side went away; the client's informer re-lists

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


def serve_api_view(
    listen: tuple[str, int],
    upstream: tuple[str, int],
    *,
    ca: Path,
    cert: Path,
    key: Path,
    client_cert: Path,
    client_key: Path,
    allowed_cn: str,
    pod_cidr: str,
    node: str,
) -> None:
    upstream_ctx = ssl.create_default_context(cafile=str(ca))
    upstream_ctx.load_cert_chain(str(client_cert), str(client_key))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    server_ctx.load_verify_locations(cafile=str(ca))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server = _ApiView(listen, upstream, upstream_ctx, server_ctx, allowed_cn, ipaddress.ip_network(pod_cidr), node)
    print(
        f"{time.strftime('%H:%M:%S')} API view on https://{listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}; "
        f"EndpointSlice endpoints limited to {pod_cidr} on node {node}",
        flush=True,
    )
    server.serve_forever()


# --- the add-on ----------------------------------------------------------------------------------------------------


def info(sb: SandboxHandle) -> dict:
    """``state_dir/traefik/info.json``: ports and paths; or ``{"skipped": reason}``."""
    return read_info(sb, NAME)


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    d = addon_dir(sb, NAME)
    scope = real_node_scope(sb)
    if scope is None:
        reason = "no real node in this sandbox (start it with --real-node): no pod can receive traffic"
        write_json(d / "info.json", {"skipped": reason})
        say(sb, f"[up] add-on {NAME}: skipped, {reason}")
        return []
    web_port, admin_port, view_port = sb.free_port(), sb.free_port(), sb.free_port()
    sb.apply(gatewayapi.manifests())
    sb.apply(rbac())
    api = urllib.parse.urlsplit(apiserver_url(sb))
    client_cert, client_key = sb.issue_cert(USER, client=True)
    view_cert, view_key = sb.issue_cert("traefik-api-view", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    kubeconfig = pki.write_kubeconfig(
        d / "kubeconfig", f"https://127.0.0.1:{view_port}", Path(sb.ca_cert), client_cert, client_key, user=USER
    )
    config_path = d / "traefik.yaml"
    write_json(config_path, static_config(web_port, admin_port))
    meta = {
        "web_port": web_port,
        "admin_port": admin_port,
        "api_view_port": view_port,
        "url": f"http://127.0.0.1:{web_port}",
        "ping": f"http://127.0.0.1:{admin_port}/ping",
        "metrics": f"http://127.0.0.1:{admin_port}/metrics",
        "config": str(config_path),
        "kubeconfig": str(kubeconfig),
        "gateway_class": GATEWAY_CLASS,
        "gateway": f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}",
        "node": scope.node,
        "pod_cidr": scope.pod_cidr,
    }
    write_json(d / "info.json", meta)
    sb.apply(gateway_objects(web_port))
    return [
        Process(
            name="traefik-api-view",
            argv=[
                sys.executable,
                "-W",
                "ignore::RuntimeWarning:runpy",  # the package __init__ imports this module first
                "-m",
                "aiconf.sandbox.addons.traefik",
                "api-view",
                f"--listen=127.0.0.1:{view_port}",
                f"--upstream={api.hostname}:{api.port}",
                f"--ca={sb.ca_cert}",
                f"--cert={view_cert}",
                f"--key={view_key}",
                f"--client-cert={client_cert}",
                f"--client-key={client_key}",
                f"--allowed-cn={USER}",
                f"--pod-cidr={scope.pod_cidr}",
                f"--node={scope.node}",
            ],
            cwd=d,
            ready=lambda: tcp_open(view_port),
            ready_timeout_s=30.0,
        ),
        Process(
            name="traefik",
            argv=[str(bins["traefik"]), f"--configFile={config_path}"],
            env={"KUBECONFIG": str(kubeconfig)},
            cwd=d,
            ready=lambda: http_ok(meta["ping"]),
            ready_timeout_s=90.0,
            depends_on=("traefik-api-view",),
        ),
    ]


def _conditions(obj: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions", [])}


def wait_ready(sb: SandboxHandle, timeout_s: float = 90.0) -> None:
    if info(sb).get("skipped"):
        return

    def accepted() -> tuple[bool, str]:
        gc = kube_json(sb, "get", "gatewayclass", GATEWAY_CLASS)
        conds = _conditions(gc)
        return conds.get("Accepted") == "True", f"GatewayClass conditions {conds}"

    def programmed() -> tuple[bool, str]:
        gw = kube_json(sb, "get", "gateway", "-n", GATEWAY_NAMESPACE, GATEWAY_NAME)
        conds = _conditions(gw)
        addresses = [a.get("value") for a in (gw.get("status") or {}).get("addresses") or []]
        return conds.get(
            "Programmed"
        ) == "True" and "127.0.0.1" in addresses, f"Gateway conditions {conds}, addresses {addresses}"

    wait_for(f"GatewayClass {GATEWAY_CLASS} Accepted", accepted, timeout_s=timeout_s)
    wait_for(f"Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} Programmed at 127.0.0.1", programmed, timeout_s=timeout_s)


ADDON = Addon(
    name=NAME,
    summary=f"Traefik {VERSION} Gateway API data plane on 127.0.0.1 routing to real-node pods "
    f"(GatewayClass {GATEWAY_CLASS}); runs only with the real node",
    components=(TRAEFIK,),
    start=start,
    wait_ready=wait_ready,
    # Default: it only runs when the sandbox has its real node (otherwise start() skips, starting nothing).
    default=True,
)


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiconf.sandbox.addons.traefik")
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("api-view", help="the EndpointSlice-filtering API proxy Traefik reads the cluster through")
    v.add_argument("--listen", required=True, type=_hostport)
    v.add_argument("--upstream", required=True, type=_hostport)
    for opt in ("ca", "cert", "key", "client-cert", "client-key"):
        v.add_argument(f"--{opt}", required=True, type=Path)
    v.add_argument("--allowed-cn", required=True)
    v.add_argument("--pod-cidr", required=True)
    v.add_argument("--node", required=True)
    args = parser.parse_args(argv)
    if args.listen[0] != "127.0.0.1":
        parser.error("the API view listens on 127.0.0.1 only")
    socket.setdefaulttimeout(None)
    serve_api_view(
        args.listen,
        args.upstream,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        client_cert=args.client_cert,
        client_key=args.client_key,
        allowed_cn=args.allowed_cn,
        pod_cidr=args.pod_cidr,
        node=args.node,
    )
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "api-view"
    sys.exit(main())
