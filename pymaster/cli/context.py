"""What every pyctl command works with: the ``Context`` (the client, the namespace flag, the output
streams and the clock), ``CommandError`` for problems found on this side, and which API errors
stop a command that acts on several objects.

Errors the user can act on are raised: ``CommandError`` (a bad manifest, a namespace conflict),
``pymaster.api.errors.ApiError`` from the server; ``main`` prints either on one line. Commands
that act on several objects (apply, delete, get by names) report a failure for one object, carry
on with the rest and exit 1, as kubectl does, unless the error is fatal (``is_fatal``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import grpc

from pymaster.api import errors
from pymaster.cli import errors as cli_errors
from pymaster.client import Client

DEFAULT_NAMESPACE = "default"


class CommandError(Exception):
    """A problem found by pyctl itself; printed as ``error: <message>``."""


@dataclass
class Context:
    """What a command works with: the client, the namespace flag and the output streams.

    The client is made by ``connect`` on first use, so that a command failing on its own input
    (a bad manifest, a missing file) says so even where no client config exists yet.
    """

    connect: Callable[[], Client]
    namespace: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    out_bytes: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    clock: Callable[[], float] = time.time
    _client: Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> Client:
        """The master's client (raises the client's config errors on first use)."""
        if self._client is None:
            self._client = self.connect()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def ns(self) -> str:
        """The namespace to work in: -n, else "default"."""
        return self.namespace or DEFAULT_NAMESPACE

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def print(self, line: str) -> None:
        self.write(line + "\n")

    def print_error(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()

    def print_api_error(self, exc: errors.ApiError) -> None:
        """The one line kubectl prints for an API error."""
        self.print_error(cli_errors.format_api_error(exc, self.client.server))


def is_fatal(exc: errors.ApiError) -> bool:
    """Errors after which a multi-object command stops instead of moving to the next object."""
    if isinstance(exc, errors.Unavailable):
        return cli_errors.is_connect_failure(exc)
    # A refused identity fails every call alike.
    return exc.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAUTHENTICATED)
