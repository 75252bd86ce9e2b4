"""Who is calling: the identity a verified client certificate carries.

gRPC has already checked the chain against the cluster CA when a servicer runs (the listener
requires client certificates), so this module only maps the subject:

- ``O=system:masters, CN=admin``            -> admin
- ``O=system:masters, CN=system:pymaster``  -> master (the master calling an agent)
- ``O=system:nodes, CN=system:node:<name>`` -> node ``<name>``
- anything else, or no certificate          -> anonymous (authorization denies it)

Only those exact pairs count, so e.g. a ``system:masters`` certificate with another common name
grants nothing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import grpc

from pymaster.api.pki import (
    ADMIN_CN,
    MASTER_CLIENT_CN,
    MASTERS_GROUP,
    NODE_CN_PREFIX,
    NODES_GROUP,
    cert_info,
)

log = logging.getLogger(__name__)

IdentityKind = Literal["admin", "node", "master", "anonymous"]
_PEER_CERT_KEY = "x509_pem_cert"


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. ``name`` is the node name for nodes, the CN for admin/master."""

    kind: IdentityKind
    name: str
    serial: str = ""
    public_key_sha256: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "anonymous" else f"{self.kind}:{self.name}"


ANONYMOUS = Identity("anonymous", "")


# Parsing a certificate on every call cost about a tenth of the master's CPU under load; a
# client keeps one certificate for many calls. Keyed by the whole PEM, so a new certificate is
# parsed anew (revocation is checked on the serial by the caller, every call).
@functools.lru_cache(maxsize=4096)
def identity_from_pem(cert_pem: bytes) -> Identity:
    """Map a (chain-verified) leaf certificate to an Identity.

    Raises:
        ValueError: the PEM is not a certificate.
    """
    info = cert_info(cert_pem)
    extra = {"serial": info.serial, "public_key_sha256": info.public_key_sha256}
    cn, org = info.common_name, info.organization
    if org == MASTERS_GROUP and cn == ADMIN_CN:
        return Identity("admin", cn, **extra)
    if org == MASTERS_GROUP and cn == MASTER_CLIENT_CN:
        return Identity("master", cn, **extra)
    if org == NODES_GROUP and cn.startswith(NODE_CN_PREFIX) and len(cn) > len(NODE_CN_PREFIX):
        return Identity("node", cn[len(NODE_CN_PREFIX) :], **extra)
    return Identity("anonymous", "", **extra)


def identity_from_context(context: grpc.aio.ServicerContext) -> Identity:
    """The caller's identity from a grpc.aio servicer context (anonymous without a client cert)."""
    certs = (context.auth_context() or {}).get(_PEER_CERT_KEY)
    if not certs:
        return ANONYMOUS
    try:
        return identity_from_pem(certs[0])
    except ValueError as exc:
        log.warning("unparseable peer certificate error=%s", exc)
        return ANONYMOUS
