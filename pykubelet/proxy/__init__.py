"""The node proxy (kube-proxy's role, iptables mode): Services and their EndpointSlices become
nat-table chains on the host, so a Service's address reaches its pods through the kernel.

``rules`` computes the chains (pure), ``iptables`` runs iptables-restore/-save, ``proxier`` is the
sync loop, ``cleanup`` removes everything the proxy owns (``pykubelet --cleanup``).
"""
