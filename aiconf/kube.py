"""A thin layer over the official ``kubernetes`` client: plain-dict objects, retries of transient errors, errors
translated into one readable line, server-side apply, and watch-based waits with bounds.

Everything returns and accepts plain ``dict`` objects (what ``kubectl get -o json`` shows), so checks and evidence
never depend on the client's generated model classes (which changed shape twice in 2026).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse

import urllib3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import dynamic, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from aiconf.errors import ClusterAccessError, ConfigError, ForbiddenError, WaitTimeout

#: HTTP statuses worth retrying: throttling and server-side trouble (an apiserver restart answers 503 for a while).
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_VERB = {"GET": "get", "LIST": "list", "WATCH": "watch", "POST": "create", "PUT": "update", "PATCH": "patch",
         "DELETE": "delete"}


def _plain(obj: Any) -> Any:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


class Kube:
    """Cluster access for checks. Build with :meth:`connect`."""

    def __init__(self, api_client: k8s_client.ApiClient, *, request_timeout_s: float = 30, retries: int = 5,
                 server: str = ""):
        self.api_client = api_client
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.server = server
        #: What a wait in progress waits for ("" when none): an interrupted or timed-out check reports it.
        self.waiting_for = ""
        self._dyn: dynamic.DynamicClient | None = None
        self._lock = threading.Lock()

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def connect(cls, kubeconfig: str = "", context: str = "", *, request_timeout_s: float = 30,
                retries: int = 5) -> Kube:
        """Load a kubeconfig (``""`` = ``$KUBECONFIG`` or ``~/.kube/config``) and check the API answers.

        Raises:
            ClusterAccessError: missing/unreadable kubeconfig, unknown context, unreachable server, rejected credentials.
        """
        path = os.path.expanduser(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "~/.kube/config")
        path = os.path.expanduser(path.split(os.pathsep)[0])
        if Path(path).is_dir():
            raise ClusterAccessError(f"kubeconfig {path} is a folder, not a file")
        if not Path(path).is_file():
            raise ClusterAccessError(f"kubeconfig {path} does not exist (set --kubeconfig or KUBECONFIG)")
        if not os.access(path, os.R_OK):
            raise ClusterAccessError(f"kubeconfig {path} is not readable")
        try:
            import yaml

            data = yaml.safe_load(Path(path).read_text())
        except Exception:  # unreadable or not YAML: the loader below says why
            data = None
        if isinstance(data, dict) and isinstance(data.get("contexts"), list):
            names = [str((c or {}).get("name")) for c in data["contexts"] if isinstance(c, dict)]
            if context and context not in names:
                raise ClusterAccessError(f"kubeconfig {path} has no context '{context}' (contexts: "
                                         f"{', '.join(names[:10]) or 'none'})")
            if not context and names and not data.get("current-context"):
                raise ClusterAccessError(f"kubeconfig {path} has no current-context: name one with --context "
                                         f"({', '.join(names[:10])})")
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(config_file=path, context=context or None, client_configuration=configuration)
        except k8s_config.ConfigException as e:
            raise ClusterAccessError(f"kubeconfig {path}: {str(e).splitlines()[0]}") from None
        except (TypeError, AttributeError):  # YAML, but not a mapping of clusters, users and contexts
            raise ClusterAccessError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping with clusters, users "
                                     "and contexts)") from None
        except Exception as e:  # malformed YAML, missing cert files, ...
            raise ClusterAccessError(f"kubeconfig {path} cannot be used: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        if urllib.parse.urlsplit(configuration.host).scheme not in ("https", "http") or " " in configuration.host:
            raise ClusterAccessError(f"kubeconfig {path}: the cluster's server {configuration.host!r} is not a URL "
                                     "(https://host:port)")
        configuration.retries = False  # we retry ourselves, with a bound and a reason
        kube = cls(k8s_client.ApiClient(configuration), request_timeout_s=request_timeout_s, retries=retries,
                   server=configuration.host)
        kube.version()  # fail fast with a clear line
        return kube

    @property
    def dyn(self) -> dynamic.DynamicClient:
        with self._lock:
            if self._dyn is None:
                self._dyn = self._call(lambda: dynamic.DynamicClient(self.api_client), "GET", "discovery")
            return self._dyn

    # -- error handling --------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], method: str, what: str, namespace: str | None = None) -> Any:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except ApiException as e:
                if e.status == 0 and str(e.reason or "").startswith("SSLError"):
                    # The client wraps TLS failures (wrong CA, wrong server name) as status 0: not transient.
                    detail = str(e.reason).splitlines()[-1][:200]
                    raise ClusterAccessError(f"TLS with the API server {self.server} failed: {detail} (check the "
                                             "kubeconfig's certificate-authority for this cluster)") from None
                if e.status == 403:
                    raise ForbiddenError(_VERB.get(method, method.lower()), what, namespace, _message(e)) from None
                if e.status == 401:
                    raise ClusterAccessError(f"the API server {self.server} rejected the credentials (401 Unauthorized)") from None
                if e.status in TRANSIENT_STATUS and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 8)
                    continue
                raise
            except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as e:
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 8)
                    continue
                raise ClusterAccessError(f"the API server {self.server} is unreachable: {_short(e)}") from None
        raise AssertionError("unreachable")

    # -- discovery -------------------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self.raw("GET", "/version")

    def raw(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
            content_type: str | None = None, timeout_s: float | None = None) -> Any:
        """A request to any API path; returns parsed JSON (or text). Used for discovery and aggregated APIs."""

        def do() -> Any:
            headers = {"Accept": "application/json, */*"}
            if content_type:
                headers["Content-Type"] = content_type
            elif body is not None:
                headers["Content-Type"] = "application/json"
            request = self.api_client.param_serialize(method, path, query_params=list((query or {}).items()),
                                                      header_params=headers, body=body, auth_settings=["BearerToken"])
            response = self.api_client.call_api(*request, _request_timeout=timeout_s or self.request_timeout_s)
            data = response.read()
            if response.status >= 400:
                raise ApiException(status=response.status, reason=response.reason, http_resp=response.response)
            text = data.decode() if isinstance(data, bytes) else data
            try:
                return json.loads(text)
            except (json.JSONDecodeError, TypeError):
                return text

        return self._call(do, method, path)

    def served_versions(self, group: str) -> list[str]:
        """Versions of an API group the server serves (``[]`` when the group is absent)."""
        try:
            data = self.raw("GET", f"/apis/{group}")
        except ApiException as e:
            if e.status == 404:
                return []
            raise
        return [v["version"] for v in data.get("versions", [])]

    def api_resources(self, group_version: str) -> list[dict[str, Any]]:
        """Resources of ``group/version`` (``v1`` for core) with their verbs; ``[]`` when not served."""
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        try:
            return self.raw("GET", path).get("resources", [])
        except ApiException as e:
            if e.status in (404, 503):
                return []
            raise

    def has_kind(self, api_version: str, kind: str) -> bool:
        return any(r.get("kind") == kind and "/" not in r["name"] for r in self.api_resources(api_version))

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            # CRDs installed after discovery was cached: refresh once.
            self.dyn.resources.invalidate_cache()
            try:
                return self.dyn.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ConfigError(f"the cluster does not serve {kind} in {api_version}") from None

    # -- objects ---------------------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        res = self._resource(api_version, kind)
        try:
            return _plain(self._call(lambda: res.get(name=name, namespace=namespace), "GET", kind, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        res = self._resource(api_version, kind)
        out = self._call(
            lambda: res.get(namespace=namespace, label_selector=label_selector, field_selector=field_selector),
            "LIST", kind, namespace,
        )
        return [_plain(i) for i in (_plain(out) or {}).get("items", [])]

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = obj.get("metadata", {}).get("namespace") if res.namespaced else None
        kwargs = {"dry_run": "All"} if dry_run else {}
        attempts = 0

        def do() -> Any:
            nonlocal attempts
            attempts += 1
            return res.create(body=obj, namespace=ns, **kwargs)

        try:
            return _plain(self._call(do, "POST", obj["kind"], ns))
        except ApiException as e:
            # A create retried after a lost connection (an API server restart) may have gone through the first time:
            # the object that exists is ours when it carries every label we sent (the run id makes them unique).
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if e.status != 409 or attempts < 2 or dry_run or not labels:
                raise
            existing = self.get(obj["apiVersion"], obj["kind"], obj["metadata"].get("name", ""), ns)
            have = ((existing or {}).get("metadata") or {}).get("labels") or {}
            if existing and not existing["metadata"].get("deletionTimestamp") and labels.items() <= have.items():
                return existing
            raise

    def apply(self, obj: dict[str, Any], *, field_manager: str = "aiconf", force: bool = True) -> dict[str, Any]:
        """Server-side apply (works for CRDs whose schema is too large for client-side apply)."""
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = obj.get("metadata", {}).get("namespace") if res.namespaced else None
        return _plain(self._call(
            lambda: self.dyn.server_side_apply(res, body=obj, namespace=ns, field_manager=field_manager,
                                               force_conflicts=force),
            "PATCH", obj["kind"], ns,
        ))

    def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None,
              *, subresource: str | None = None) -> dict[str, Any]:
        res = self._resource(api_version, kind)
        target = getattr(res, subresource) if subresource else res
        return _plain(self._call(
            lambda: target.patch(name=name, namespace=namespace, body=patch, content_type="application/merge-patch+json"),
            "PATCH", kind, namespace,
        ))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               propagation: str = "Background") -> bool:
        """Delete; True when something was deleted, False when it was already gone."""
        res = self._resource(api_version, kind)
        try:
            self._call(lambda: res.delete(name=name, namespace=namespace, propagation_policy=propagation),
                       "DELETE", kind, namespace)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def delete_namespace(self, name: str, timeout_s: float = 180) -> None:
        """Delete a namespace and wait (watching) until it is gone."""
        if self.delete("v1", "Namespace", name):
            self.wait_for_deletion("v1", "Namespace", name, None, timeout_s)

    # -- pods ------------------------------------------------------------------------------------------------
    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        core = k8s_client.CoreV1Api(self.api_client)
        try:
            return self._call(
                lambda: core.read_namespaced_pod_log(name, namespace, container=container, tail_lines=tail_lines),
                "GET", "pods/log", namespace,
            )
        except ApiException as e:
            return f"<logs unavailable: {e.status} {_message(e)}>"

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return self.list("v1", "Event", namespace)

    # -- waits -----------------------------------------------------------------------------------------------
    def wait_for(self, api_version: str, kind: str, name: str, namespace: str | None,
                 predicate: Callable[[dict[str, Any] | None], bool], timeout_s: float, what: str,
                 describe: Callable[[dict[str, Any] | None], str] | None = None) -> dict[str, Any] | None:
        """Watch one object until ``predicate(obj)`` holds (``obj`` is None while it does not exist).

        Raises:
            WaitTimeout: not satisfied within ``timeout_s``; carries the last state seen.
        """
        found: list[dict[str, Any] | None] = []

        def check(objs: list[dict[str, Any]]) -> bool:
            obj = next((o for o in objs if o["metadata"]["name"] == name), None)
            found[:] = [obj]
            return predicate(obj)

        self.wait_until(api_version, kind, namespace, check, timeout_s, what,
                        field_selector=f"metadata.name={name}",
                        describe=lambda objs: (describe or _describe)(found[0] if found else None))
        return found[0] if found else None

    def wait_for_deletion(self, api_version: str, kind: str, name: str, namespace: str | None, timeout_s: float) -> None:
        self.wait_for(api_version, kind, name, namespace, lambda o: o is None, timeout_s, f"{kind} {name} to be deleted")

    def wait_until(self, api_version: str, kind: str, namespace: str | None,
                   predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   on_change: Callable[[list[dict[str, Any]]], None] | None = None,
                   describe: Callable[[list[dict[str, Any]]], str] | None = None) -> list[dict[str, Any]]:
        """Keep a list of matching objects current through a watch until ``predicate(objects)`` holds.

        The initial list and every watch event update the set; a broken or expired watch is re-established from a
        fresh list (bounded by the overall deadline). ``on_change`` sees every new state (for time series).

        Raises:
            WaitTimeout: the deadline passed; carries a description of the last state.
        """
        res = self._resource(api_version, kind)
        started = time.monotonic()
        deadline = started + timeout_s
        objects: dict[str, dict[str, Any]] = {}
        # Time without a live list/watch (API server restarting, connection lost) does not count as observation:
        # the deadline moves by it (at most to twice the timeout), and a wait that ends without seeing the cluster
        # raises ClusterAccessError instead of WaitTimeout, so a "nothing happened for N s" never rests on a gap.
        blind_since: float | None = None
        unobserved = 0.0
        last_error = ""

        def key(o: dict[str, Any]) -> str:
            return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"

        def state() -> list[dict[str, Any]]:
            return list(objects.values())

        def lost(error: str) -> None:
            nonlocal blind_since, last_error
            blind_since = time.monotonic() if blind_since is None else blind_since
            last_error = error

        self.waiting_for = what
        interrupted = False
        try:
            while True:
                if time.monotonic() >= deadline:
                    break
                try:
                    listing = _plain(self._call(lambda: res.get(namespace=namespace, label_selector=label_selector,
                                                                field_selector=field_selector), "LIST", kind, namespace))
                    if blind_since is not None:
                        gap = time.monotonic() - blind_since
                        unobserved += gap
                        deadline = min(deadline + gap, started + 2 * timeout_s)
                        blind_since = None
                    objects = {key(o): o for o in (listing.get("items") or [])}
                    rv = listing.get("metadata", {}).get("resourceVersion")
                    if on_change:
                        on_change(state())
                    if predicate(state()):
                        return state()
                    remaining = deadline - time.monotonic()
                    w = watch.Watch()
                    for event in w.stream(res.get, namespace=namespace, label_selector=label_selector,
                                          field_selector=field_selector, resource_version=rv, serialize=False,
                                          timeout_seconds=max(1, int(min(remaining, 60)))):
                        obj = _plain(event["object"])
                        if event["type"] == "ERROR" or not isinstance(obj, dict) or "metadata" not in obj:
                            break  # expired (410) or broken: re-list
                        if event["type"] == "DELETED":
                            objects.pop(key(obj), None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            objects[key(obj)] = obj
                        else:
                            continue
                        if on_change:
                            on_change(state())
                        if predicate(state()):
                            w.stop()
                            return state()
                        if time.monotonic() >= deadline:
                            w.stop()
                            break
                    # The watch ended (its timeout, an expired resourceVersion, or a server that went away): from
                    # here until the next successful list nothing is observed.
                    lost("watch ended")
                except ApiException as e:
                    if e.status == 403:  # may list but not watch
                        raise ForbiddenError("watch", kind, namespace, _message(e)) from None
                    if e.status == 410 or e.status in TRANSIENT_STATUS:
                        lost(f"{e.status} {_message(e)}")
                        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                        continue  # re-list
                    raise
                except ForbiddenError:
                    raise
                except ClusterAccessError as e:
                    if "rejected the credentials" in str(e):
                        raise
                    lost(str(e))  # _call ran out of retries: keep trying until the deadline
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                    continue
                except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as e:
                    lost(_short(e))
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))  # apiserver restarting: re-establish
                    continue
        except KeyboardInterrupt:
            interrupted = True  # keep waiting_for: the executor says what the interrupted wait was waiting for
            raise
        finally:
            if not interrupted:
                self.waiting_for = ""
        if blind_since is not None and (time.monotonic() - blind_since > 1.0 or last_error != "watch ended"):
            raise ClusterAccessError(
                f"lost the API server {self.server} while waiting for {what}: nothing observed for the last "
                f"{time.monotonic() - blind_since:.1f}s ({last_error}); not judging from a gap"
            )
        last = (describe or (lambda objs: ", ".join(_describe(o) for o in objs[:5]) or "nothing"))(state())
        if unobserved >= 1.0:
            last += f"; {unobserved:.1f}s unobserved while the API server was unreachable (the wait was extended by it)"
        raise WaitTimeout(what, timeout_s, last)

    def sample(self, fn: Callable[[], Any], interval_s: float, until: Callable[[Any], bool], timeout_s: float,
               what: str) -> Any:
        """Poll ``fn`` every ``interval_s`` until ``until(value)`` — only for values no watch can deliver (metrics
        APIs, HTTP endpoints). Bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        value = None
        self.waiting_for = what
        interrupted = False
        try:
            while True:
                value = fn()
                if until(value):
                    return value
                if time.monotonic() + interval_s > deadline:
                    raise WaitTimeout(what, timeout_s, str(value)[:200])
                time.sleep(interval_s)
        except KeyboardInterrupt:
            interrupted = True  # keep waiting_for (see wait_until)
            raise
        finally:
            if not interrupted:
                self.waiting_for = ""


def _message(e: ApiException) -> str:
    try:
        return json.loads(e.body).get("message", "") if e.body else (e.reason or "")
    except (ValueError, TypeError, AttributeError):
        return str(e.body or e.reason)[:300]


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _describe(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return "absent"
    status = obj.get("status") or {}
    bits = [f"{obj.get('kind', '')}/{obj['metadata']['name']}"]
    if "phase" in status:
        bits.append(f"phase={status['phase']}")
    for c in status.get("conditions", [])[:6] if isinstance(status.get("conditions"), list) else []:
        bits.append(f"{c.get('type')}={c.get('status')}")
    return " ".join(bits)


def condition(obj: dict[str, Any] | None, cond_type: str) -> str | None:
    """The status (``"True"``/``"False"``/``"Unknown"``) of a top-level condition, or None."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == cond_type:
            return c.get("status")
    return None


def pods_by_phase(pods: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in pods:
        phase = (p.get("status") or {}).get("phase", "Unknown")
        counts[phase] = counts.get(phase, 0) + 1
    return counts
