"""The sandbox's certificates and kubeconfigs, made with ``cryptography`` (no openssl, no cfssl, no kubeadm).

What a kubeadm cluster has, scaled to one machine and 127.0.0.1:

- ``ca`` (the cluster CA): signs the API server's serving cert, every client cert, and the serving certs of the
  controller manager, scheduler and kwok; add-ons get theirs from :func:`issue_cert` (webhooks, APIService backends).
- ``front-proxy-ca``: signs only ``front-proxy-client``, the identity the aggregator uses towards APIService backends
  (kept separate as in kubeadm, so a cluster-CA client cert can never pose as the aggregator).
- ``sa.key``/``sa.pub``: signs service-account tokens.

Keys are ECDSA P-256 (fast to generate: a fresh PKI per ``up`` costs a few tens of milliseconds); the
service-account key is RSA 2048, the algorithm every token consumer accepts. Certificates are valid for a year
with a one-hour backdate so clock skew between processes never matters.

Files: ``<dir>/<name>.crt`` and ``<dir>/<name>.key`` (PEM, keys mode 0600).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate of the sandbox PKI.

    Attributes:
        name: file stem (``<name>.crt``/``<name>.key``).
        common_name: subject CN (the Kubernetes user name for client certs).
        organizations: subject O entries (Kubernetes groups for client certs).
        dns_names / ip_addresses: subject alternative names (serving certs).
        client / server: extended key usages.
        ca: which CA signs it (``ca`` or ``front-proxy-ca``).
    """

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    client: bool = False
    server: bool = False
    ca: str = "ca"


def apiserver_sans(service_ip: str = "10.96.0.1") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IPs) the API server's serving cert must carry: loopback plus the in-cluster names and IP."""
    dns = (
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    return dns, ("127.0.0.1", service_ip)


def core_certs(service_ip: str = "10.96.0.1") -> tuple[CertSpec, ...]:
    """The leaf certs the control plane needs; the list kubeadm makes, minus etcd TLS (etcd serves plain HTTP on
    127.0.0.1, reachable only from this machine) and the node/kubelet certs (kwok nodes have no kubelet)."""
    dns, ips = apiserver_sans(service_ip)
    loopback = dict(dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True)
    return (
        CertSpec("apiserver", "kube-apiserver", dns_names=dns, ip_addresses=ips, server=True),
        CertSpec("admin", "kubernetes-admin", ("system:masters",), client=True),
        CertSpec("kube-controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("kube-scheduler", "system:kube-scheduler", client=True),
        # kwok writes node and pod status for every fake node and impersonates users for Stage patches, so it
        # gets what kwokctl gives it: full access.
        CertSpec("kwok", "kwok-controller", ("system:masters",), client=True),
        # The API server's identity towards kubelets (here: kwok's kubelet-like server for logs/exec/metrics).
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",), client=True),
        CertSpec("front-proxy-client", "front-proxy-client", client=True, ca="front-proxy-ca"),
        # Serving certs for the components' own HTTPS ports, so readiness probes verify TLS and no component
        # writes self-signed certs to its default /var/run/kubernetes.
        CertSpec("kube-controller-manager-serving", "kube-controller-manager", **loopback),
        CertSpec("kube-scheduler-serving", "kube-scheduler", **loopback),
        CertSpec("kwok-serving", "kwok", **loopback),
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(directory: Path, name: str, common_name: str) -> tuple[Path, Path]:
    """Write a self-signed CA ``<name>.crt``/``<name>.key``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, keyp = directory / f"{name}.crt", directory / f"{name}.key"
    _write_key(keyp, key)
    _write_cert(crt, cert)
    return crt, keyp


def _load_ca(ca_cert: Path, ca_key: Path):
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    return cert, key


def issue_cert(
    directory: Path,
    name: str,
    *,
    ca_cert: Path,
    ca_key: Path,
    common_name: str | None = None,
    organizations: tuple[str, ...] | list[str] = (),
    dns_names: tuple[str, ...] | list[str] = (),
    ip_addresses: tuple[str, ...] | list[str] = (),
    client: bool = False,
    server: bool | None = None,
) -> tuple[Path, Path]:
    """Issue ``<directory>/<name>.crt``/``.key`` signed by the given CA; returns (cert path, key path).

    ``server`` defaults to "has SANs": a cert with DNS names or IPs is a serving cert, one without is a client
    cert. Both usages may be set (webhook servers that also call the API, for example).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, signer = _load_ca(ca_cert, ca_key)
    if server is None:
        server = bool(dns_names or ip_addresses)
    key = _new_key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name or name))
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    crt, keyp = directory / f"{name}.crt", directory / f"{name}.key"
    _write_key(keyp, key)
    _write_cert(crt, cert)
    return crt, keyp


def create_service_account_keys(directory: Path) -> tuple[Path, Path]:
    """Write ``sa.key`` (RSA 2048, signs tokens) and ``sa.pub`` (verifies them); returns (key, pub)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyp, pub = directory / "sa.key", directory / "sa.pub"
    _write_key(keyp, key)
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return keyp, pub


def create_pki(directory: Path, service_ip: str = "10.96.0.1") -> dict[str, Path]:
    """Create the whole control-plane PKI under ``directory``; returns ``{file stem or 'sa.key'...: path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for ca_name, cn in (("ca", "aiconf-sandbox-ca"), ("front-proxy-ca", "aiconf-sandbox-front-proxy-ca")):
        crt, key = create_ca(directory, ca_name, cn)
        out[f"{ca_name}.crt"], out[f"{ca_name}.key"] = crt, key
    for spec in core_certs(service_ip):
        crt, key = issue_cert(
            directory,
            spec.name,
            ca_cert=out[f"{spec.ca}.crt"],
            ca_key=out[f"{spec.ca}.key"],
            common_name=spec.common_name,
            organizations=spec.organizations,
            dns_names=spec.dns_names,
            ip_addresses=spec.ip_addresses,
            client=spec.client,
            server=spec.server,
        )
        out[f"{spec.name}.crt"], out[f"{spec.name}.key"] = crt, key
    out["sa.key"], out["sa.pub"] = create_service_account_keys(directory)
    return out


def kubeconfig_dict(server: str, ca_cert: Path, client_cert: Path, client_key: Path, *, user: str,
                    cluster: str = "aiconf-sandbox") -> dict:
    """A kubeconfig with the CA and client credentials embedded (the file works when copied elsewhere)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client_cert), "client-key-data": b64(client_key)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client_cert: Path, client_key: Path, *,
                     user: str, cluster: str = "aiconf-sandbox") -> Path:
    """Write a kubeconfig (JSON is valid YAML; every client reads it) with mode 0600; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(kubeconfig_dict(server, ca_cert, client_cert, client_key, user=user, cluster=cluster), indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data + "\n")
    return path
