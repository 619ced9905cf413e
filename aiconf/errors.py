"""The toolkit's error tree: one base, a few kinds, structured fields and one readable line each.

The CLI turns any :class:`AiconfError` into one line on stderr and exit code 2 (no traceback unless ``--debug``).
Checks never let these escape as crashes: the check context converts them into ERROR (or the verdict a preflight
error carries).
"""

from __future__ import annotations


class AiconfError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code = 2


class ConfigError(AiconfError):
    """Bad input: a profile, parameter, requirement id, version, template or run folder is wrong."""


class ClusterAccessError(AiconfError):
    """The cluster cannot be used: kubeconfig missing/unreadable, API unreachable, credentials rejected."""


class ForbiddenError(ClusterAccessError):
    """RBAC denied a request the toolkit needs; names the verb and resource."""

    def __init__(self, verb: str, resource: str, namespace: str | None = None, detail: str = ""):
        self.verb, self.resource, self.namespace, self.detail = verb, resource, namespace, detail
        where = f" in namespace {namespace}" if namespace else ""
        super().__init__(f"forbidden: cannot {verb} {resource}{where} (grant it with the role in rbac/aiconf-clusterrole.yaml){': ' + detail if detail else ''}")


class WaitTimeout(AiconfError):
    """A bounded wait ran out; says what was awaited, for how long and the last state seen."""

    def __init__(self, what: str, timeout_s: float, last_seen: str = ""):
        self.what, self.timeout_s, self.last_seen = what, timeout_s, last_seen
        super().__init__(f"timed out after {timeout_s:g}s waiting for {what}" + (f" (last seen: {last_seen})" if last_seen else ""))


class SandboxError(AiconfError):
    """The local sandbox cluster could not be built, started or stopped."""
