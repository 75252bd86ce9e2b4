"""``pykubelet --cleanup``: removes every rule and chain the node proxy owns (the jumps from the
builtin chains, then the KUBE-* chains of the nat and filter tables), like ``kube-proxy
--cleanup``. Docker's chains and rules are never touched.
"""

from __future__ import annotations

import logging

from pykubelet.proxy import rules
from pykubelet.proxy.iptables import Iptables

log = logging.getLogger(__name__)

_OWNED = {"nat": rules.NAT_STATIC, "filter": rules.FILTER_STATIC}


async def cleanup_proxy_rules(iptables: Iptables | None = None) -> int:
    """Removes the proxy's jumps and chains (from the host by default); returns how many chains
    were deleted. Safe to run when there is nothing to remove."""
    iptables = iptables or Iptables()
    for table, chain, args in rules.BASE_JUMPS:
        await iptables.delete_rule(table, chain, args)
    deleted = 0
    for table, static in _OWNED.items():
        ours = [c for c in await iptables.chains(table) if c in static or rules.is_service_chain(c)]
        if ours:
            # One transaction per table: every chain flushed first, so jumps between them go.
            await iptables.restore(rules.restore_text(table, {}, [], ours))
            deleted += len(ours)
    log.info("proxy rules removed chains=%d", deleted)
    return deleted
