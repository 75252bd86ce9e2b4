"""Runs ``iptables``, ``iptables-save``, ``iptables-restore`` and ``sysctl`` for the node proxy,
on the host or inside a network namespace (``ip netns exec``: tests and the benchmark program a
throwaway namespace, never the host's tables).

Every call waits for the xtables lock (``-w``) as Docker and other iptables users hold it too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

log = logging.getLogger(__name__)

_CHAIN_LINE = re.compile(r"^:(\S+) ")


class IptablesError(Exception):
    """An iptables command failed; the message has its stderr."""


class Iptables:
    """The iptables commands of one network namespace.

    Args:
        netns: a named network namespace (``ip netns add``); None: the agent's own (the host's).
    """

    def __init__(self, netns: str | None = None):
        self.netns = netns
        self._prefix = ["ip", "netns", "exec", netns] if netns else []

    async def _run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self._prefix, *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        return proc.returncode or 0, out.decode(), err.decode()

    async def _check(self, argv: Sequence[str], stdin: str | None = None) -> str:
        rc, out, err = await self._run(argv, stdin)
        if rc != 0:
            raise IptablesError(f"{argv[0]} exited {rc}: {err.strip()}")
        return out

    async def restore(self, text: str, test: bool = False) -> None:
        """One ``iptables-restore --noflush`` transaction (``--test``: parse and check only)."""
        await self._check(["iptables-restore", "-w", "--noflush", *(["--test"] if test else [])], text)

    async def save(self, table: str) -> str:
        return await self._check(["iptables-save", "-t", table])

    async def chains(self, table: str) -> list[str]:
        """The chains of ``table`` (builtin ones included), from iptables-save."""
        lines = (await self.save(table)).splitlines()
        return [m.group(1) for line in lines if (m := _CHAIN_LINE.match(line))]

    async def ensure_chain(self, table: str, chain: str) -> bool:
        """Creates an empty ``chain`` unless it exists (``-N``); True if created."""
        rc, _, _ = await self._run(["iptables", "-w", "-t", table, "-N", chain])
        if rc == 0:
            return True
        await self._check(["iptables", "-w", "-t", table, "-S", chain])  # raises unless it exists
        return False

    async def ensure_rule(self, table: str, chain: str, args: Sequence[str]) -> bool:
        """Inserts the rule first in ``chain`` unless it is there (``-C || -I``); True if inserted."""
        rc, _, _ = await self._run(["iptables", "-w", "-t", table, "-C", chain, *args])
        if rc == 0:
            return False
        await self._check(["iptables", "-w", "-t", table, "-I", chain, "1", *args])
        return True

    async def delete_rule(self, table: str, chain: str, args: Sequence[str]) -> int:
        """Deletes every copy of the rule; returns how many were deleted."""
        deleted = 0
        while (await self._run(["iptables", "-w", "-t", table, "-D", chain, *args]))[0] == 0:
            deleted += 1
        return deleted

    async def sysctl(self, name: str, value: str) -> None:
        await self._check(["sysctl", "-q", "-w", f"{name}={value}"])
