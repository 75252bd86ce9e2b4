"""The pod network's iptables rules, in chains of its own (flannel's rules, on Docker):

- filter ``DOCKER-USER`` jumps (first) to ``PYKUBE-FORWARD``, which ACCEPTs traffic from or to
  the cluster CIDR (flannel's forward rules): Docker's isolation between bridge networks would
  drop pod-to-pod traffic between two nodes' networks on one host (and routed traffic from other
  hosts), and its FORWARD policy DROP would drop a NodePort's traffic from outside the cluster
  that keeps its client address (externalTrafficPolicy Local). ``DOCKER-USER`` is the chain
  Docker leaves to users; no other Docker chain is touched.
- nat ``POSTROUTING`` jumps (first) to ``PYKUBE-POSTROUTING``, which MASQUERADEs traffic from the
  node's pod CIDR to destinations outside the cluster CIDR (pods reach the world with the node's
  address; pod-to-pod traffic keeps the pods' addresses). The node's network is created with
  Docker's own masquerade off, since Docker's rule would also NAT pod-to-pod traffic.

Rules are added with ``-C``/``-A`` (idempotent): several agents on one host (each its own pod
CIDR) share the chains without erasing each other's rules. ``cleanup_pod_network_rules`` removes
the jumps and the chains (the node proxy's ``--cleanup`` calls it).
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

FORWARD_CHAIN = "PYKUBE-FORWARD"
POSTROUTING_CHAIN = "PYKUBE-POSTROUTING"
IPTABLES = "iptables"


@dataclass(frozen=True)
class Rule:
    """One iptables rule: ``iptables -t <table> -A <chain> <args>``."""

    table: str
    chain: str
    args: tuple[str, ...]


# The jumps from the built-in (or Docker's user) chains into ours, inserted first.
JUMPS = (
    Rule("filter", "DOCKER-USER", ("-m", "comment", "--comment", "pykube pod network", "-j", FORWARD_CHAIN)),
    Rule("nat", "POSTROUTING", ("-m", "comment", "--comment", "pykube pod network", "-j", POSTROUTING_CHAIN)),
)


def wanted_rules(cluster_cidr: str, pod_cidr: str) -> list[Rule]:
    """The rules of our own chains for a node with ``pod_cidr`` in a cluster of ``cluster_cidr``."""
    # Flannel's forward rules: anything from or to a pod, so pod-to-pod traffic between bridges
    # passes Docker's isolation and a NodePort with externalTrafficPolicy Local (not masqueraded:
    # the client's address is kept) reaches its pod from outside the cluster.
    return [
        Rule("filter", FORWARD_CHAIN, ("-s", cluster_cidr, "-m", "comment", "--comment",
                                       "pykube from pods", "-j", "ACCEPT")),
        Rule("filter", FORWARD_CHAIN, ("-d", cluster_cidr, "-m", "comment", "--comment",
                                       "pykube to pods", "-j", "ACCEPT")),
        Rule("nat", POSTROUTING_CHAIN, ("-s", pod_cidr, "!", "-d", cluster_cidr, "-m", "comment", "--comment",
                                        "pykube pods to outside the cluster", "-j", "MASQUERADE")),
    ]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    # -w: wait for the xtables lock (Docker and the node proxy write rules too).
    return subprocess.run([IPTABLES, "-w", "5", *args], capture_output=True, text=True, check=False)


class IptablesError(Exception):
    """iptables refused a rule."""


def _ensure_chain(table: str, chain: str) -> None:
    if _iptables("-t", table, "-S", chain).returncode != 0:
        created = _iptables("-t", table, "-N", chain)
        if created.returncode != 0 and "exists" not in created.stderr:
            raise IptablesError(f"iptables -t {table} -N {chain}: {created.stderr.strip()}")


def _ensure_rule(rule: Rule, insert: bool) -> bool:
    """Adds ``rule`` unless present; True when added."""
    if _iptables("-t", rule.table, "-C", rule.chain, *rule.args).returncode == 0:
        return False
    add = ("-I", rule.chain, "1") if insert else ("-A", rule.chain)
    result = _iptables("-t", rule.table, *add, *rule.args)
    if result.returncode != 0:
        raise IptablesError(f"iptables -t {rule.table} {' '.join(add)} {' '.join(rule.args)}: "
                            f"{result.stderr.strip()}")
    return True


def ensure_pod_network_rules(cluster_cidr: str, pod_cidr: str) -> int:
    """Makes the pod network's rules present (blocking: run it in a thread). Returns how many
    rules were added (0 when all were there).

    Raises:
        IptablesError: a rule or chain could not be added (e.g. no DOCKER-USER chain: Docker runs
            with --iptables=false).
    """
    added = 0
    for rule in wanted_rules(cluster_cidr, pod_cidr):
        _ensure_chain(rule.table, rule.chain)
        added += _ensure_rule(rule, insert=False)
    for jump in JUMPS:
        added += _ensure_rule(jump, insert=True)
    return added


def cleanup_pod_network_rules() -> None:
    """Removes every rule and chain of the pod network (for ``--cleanup``); what is absent is fine.
    Blocking."""
    for jump in JUMPS:
        while _iptables("-t", jump.table, "-D", jump.chain, *jump.args).returncode == 0:
            pass
    for table, chain in (("filter", FORWARD_CHAIN), ("nat", POSTROUTING_CHAIN)):
        _iptables("-t", table, "-F", chain)
        _iptables("-t", table, "-X", chain)
    log.info("pod network rules removed chains=%s,%s", FORWARD_CHAIN, POSTROUTING_CHAIN)
