"""How a node gets its certificate: the Bootstrap service on the master's plaintext join port, and
the node identity bindings that Join and NodeAgent.RenewCertificate share.

Join(node_name, csr_pem, proof), in this order so that an unauthenticated caller costs little:
1. the node name must be an RFC 1123 subdomain and the CSR at most ``MAX_CSR_BYTES``;
2. the proof must be HMAC(token secret, node name, CSR) (``pymaster.api.tokens``), else
   UNAUTHENTICATED "invalid join token";
3. the CSR must parse and carry a valid signature (the caller holds the key);
4. the name is bound to the CSR's public key (a NodeIdentity in the store, kind "identities"):
   a new name is bound, the same key re-joins, another key is PERMISSION_DENIED (a node name
   already held cannot be taken over; delete the node to release it);
5. the CA signs CN=system:node:<name>, O=system:nodes with the node name as its only SAN
   (whatever the CSR asks for: the master reaches an agent by checking its node name, and a
   node must never hold a certificate for an address or a name of the master), server (the
   agent's own API) and client usages, --certificate-lifetime.

Node names that are names of the master (``pki.MASTER_NAMES``, the DNS names of its serving
certificate) are refused: a node holding a certificate for one could answer as the master.

The join secret is 256 bits, so guessing is hopeless; still, each peer host that sends a wrong
proof waits before its next attempt, doubling per failure up to ``MAX_FAILURE_DELAY`` seconds
(and its attempts run one at a time), so a flood of bad joins costs the master next to nothing.
And no peer host may have more than ``MAX_JOINS_PER_HOST`` attempts in flight (waiting
included): beyond that it gets RESOURCE_EXHAUSTED at once, so one source can never hold every
join slot of the server and keep real nodes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import grpc

from pymaster.api import objects_pb2, pki, services_pb2, services_pb2_grpc, tokens
from pymaster.api.conditions import timestamp
from pymaster.api.errors import (
    AlreadyExists,
    Forbidden,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    ValidationError,
)
from pymaster.api.kinds import IDENTITIES
from pymaster.api.limits import check_name
from pymaster.server.authz import revoked_message
from pymaster.store.base import Store

log = logging.getLogger(__name__)

MAX_CSR_BYTES = 16 * 1024
FIRST_FAILURE_DELAY = 0.1
MAX_FAILURE_DELAY = 5.0
MAX_TRACKED_HOSTS = 10_000
MAX_JOINS_PER_HOST = 4


def parse_csr(field: str, csr_pem: bytes) -> pki.CsrInfo:
    """Reads a CSR of bounded size and checks its signature.

    Raises:
        ValidationError: on ``field``: too big, not a CSR, bad signature, unsupported key.
    """
    if not csr_pem:
        raise ValidationError(field, "required")
    if len(csr_pem) > MAX_CSR_BYTES:
        raise ValidationError(field, f"at most {MAX_CSR_BYTES} bytes")
    try:
        return pki.csr_info(csr_pem)
    except ValueError as err:
        raise ValidationError(field, str(err)) from None


def held_message(node_name: str) -> str:
    """The PERMISSION_DENIED message for a join or renewal with a key other than the bound one."""
    return (
        f"node name {node_name} is held by another identity; "
        f"delete the node first (pyctl delete node {node_name})"
    )


class NodeCertificates:
    """Node identity bindings in the store and node certificate signing."""

    def __init__(
        self,
        store: Store,
        ca: pki.CertificateAuthority,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
        reserved_names: Iterable[str] = pki.MASTER_NAMES,
    ):
        """
        Args:
            reserved_names: Names of the master that no node may take.
        """
        self._store = store
        self._ca = ca
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._reserved = frozenset(reserved_names)

    def check_name(self, node_name: str) -> None:
        """A joining node's name: well formed and not a name of the master.

        Raises:
            ValidationError: on ``nodeName``.
        """
        check_name("nodeName", node_name)
        if node_name in self._reserved:
            raise ValidationError(
                "nodeName", f'"{node_name}" is a name of the master; choose another node name'
            )

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem

    async def bind(self, node_name: str, public_key_sha256: str) -> bool:
        """Binds ``node_name`` to a public key, or checks that it is bound to that key.

        Returns:
            True if the binding was created now.

        Raises:
            Forbidden: the name is bound to another key.
        """
        try:
            binding = self._store.get(IDENTITIES.resource, "", node_name)
        except NotFound:
            identity = objects_pb2.NodeIdentity(public_key_sha256=public_key_sha256)
            identity.metadata.name = node_name
            identity.metadata.uid = str(uuid.uuid4())
            identity.metadata.creation_timestamp.CopyFrom(timestamp(self._clock()))
            try:
                await self._store.create(IDENTITIES.resource, identity)
                log.info("node identity bound node=%s public_key_sha256=%s", node_name, public_key_sha256)
                return True
            except AlreadyExists:  # a concurrent join of the same name won
                binding = self._store.get(IDENTITIES.resource, "", node_name)
        if binding.public_key_sha256 != public_key_sha256:
            raise Forbidden(held_message(node_name))
        return False

    def check_bound(self, node_name: str, public_key_sha256: str) -> None:
        """Checks that ``node_name`` is bound to this key (a renewal keeps the node's key).

        Raises:
            Unauthenticated: no binding (the node was deleted).
            Forbidden: bound to another key.
        """
        try:
            binding = self._store.get(IDENTITIES.resource, "", node_name)
        except NotFound:
            raise Unauthenticated(revoked_message(node_name)) from None
        if binding.public_key_sha256 != public_key_sha256:
            raise Forbidden(
                f"node {node_name}: the CSR's key is not the node's key; "
                "a renewal keeps the key (join again to change it)"
            )

    def sign(self, node_name: str, csr_pem: bytes, csr: pki.CsrInfo) -> bytes:
        """A node certificate for ``node_name`` over the CSR's key; the subject and the one SAN
        (the node name) are the CA's choice, never the CSR's."""
        return self._ca.sign_csr(
            csr_pem,
            common_name=pki.node_common_name(node_name),
            organization=pki.NODES_GROUP,
            sans=[node_name],
            lifetime_seconds=self._lifetime,
            server=True,
            client=True,
        )


def failure_delay(failures: int, first: float = FIRST_FAILURE_DELAY, cap: float = MAX_FAILURE_DELAY) -> float:
    """Seconds a peer waits before its next join after ``failures`` wrong proofs in a row."""
    if failures <= 0:
        return 0.0
    return min(first * 2 ** min(failures - 1, 32), cap)


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string: "ipv4:10.0.0.1:5000" -> "10.0.0.1",
    "ipv6:[::1]:5000" -> "::1"; anything else as it is."""
    scheme, sep, rest = peer.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return peer
    return rest.rpartition(":")[0].strip("[]") or rest


@dataclass
class _Host:
    failures: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JoinThrottle:
    """Per peer host: at most ``max_per_host`` attempts in flight; after a failed join, the next
    attempts run one at a time, each after ``failure_delay(failures)``. A success forgets the
    host's failures. At most ``max_hosts`` hosts are remembered (the oldest failure first)."""

    def __init__(
        self,
        max_hosts: int = MAX_TRACKED_HOSTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_per_host: int = MAX_JOINS_PER_HOST,
    ):
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._max_hosts = max_hosts
        self._sleep = sleep
        self._max_per_host = max_per_host
        self._in_flight: dict[str, int] = {}

    def in_flight(self, host: str) -> int:
        """How many attempts of ``host`` are running or waiting."""
        return self._in_flight.get(host, 0)

    def failures(self, host: str) -> int:
        state = self._hosts.get(host)
        return state.failures if state is not None else 0

    @contextlib.asynccontextmanager
    async def attempt(self, host: str) -> AsyncIterator[None]:
        """Wraps one join attempt of ``host``.

        Raises:
            ResourceExhausted: the host already has ``max_per_host`` attempts in flight.
        """
        in_flight = self._in_flight.get(host, 0)
        if in_flight >= self._max_per_host:
            raise ResourceExhausted(f"too many joins in flight from {host}; retry later")
        self._in_flight[host] = in_flight + 1
        try:
            state = self._hosts.get(host)
            if state is None:
                yield
                return
            async with state.lock:
                await self._sleep(failure_delay(state.failures))
                yield
        finally:
            if self._in_flight[host] <= 1:
                del self._in_flight[host]
            else:
                self._in_flight[host] -= 1

    def failed(self, host: str) -> None:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host()
            while len(self._hosts) > self._max_hosts:
                self._hosts.popitem(last=False)
        state.failures += 1
        self._hosts.move_to_end(host)

    def succeeded(self, host: str) -> None:
        self._hosts.pop(host, None)


class BootstrapServicer(services_pb2_grpc.BootstrapServicer):
    """pykube.v1.Bootstrap: GetCA and Join (served on the plaintext join port only)."""

    def __init__(
        self,
        certificates: NodeCertificates,
        join_token: Callable[[], tokens.JoinToken],
        throttle: JoinThrottle | None = None,
    ):
        """
        Args:
            certificates: Bindings and signing.
            join_token: Returns the current join token (its secret checks the proofs).
        """
        self._certificates = certificates
        self._join_token = join_token
        self._throttle = throttle or JoinThrottle()

    async def GetCA(
        self, request: services_pb2.Empty, context: grpc.aio.ServicerContext
    ) -> services_pb2.CABundle:
        return services_pb2.CABundle(ca_pem=self._certificates.ca_pem)

    async def Join(
        self, request: services_pb2.JoinRequest, context: grpc.aio.ServicerContext
    ) -> services_pb2.CertificateResponse:
        host = peer_host(context.peer() or "")
        async with self._throttle.attempt(host):
            name = request.node_name
            self._certificates.check_name(name)
            if len(request.csr_pem) > MAX_CSR_BYTES:
                raise ValidationError("csrPem", f"at most {MAX_CSR_BYTES} bytes")
            secret = self._join_token().secret
            if not tokens.verify_join_proof(secret, name, request.csr_pem, request.proof):
                self._throttle.failed(host)
                log.warning(
                    "join refused: invalid token node=%s peer=%s failures=%d",
                    name, host, self._throttle.failures(host),
                )
                raise Unauthenticated("invalid join token")
            self._throttle.succeeded(host)
            csr = parse_csr("csrPem", request.csr_pem)
            try:
                created = await self._certificates.bind(name, csr.public_key_sha256)
            except Forbidden:
                log.warning("join refused: name held by another key node=%s peer=%s", name, host)
                raise
            cert_pem = self._certificates.sign(name, request.csr_pem, csr)
        log.info("node joined node=%s peer=%s new_identity=%s", name, host, created)
        return services_pb2.CertificateResponse(certificate_pem=cert_pem, ca_pem=self._certificates.ca_pem)
