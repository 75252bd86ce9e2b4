"""The node's pod network (flannel's host-gw model on Docker): the node's own Docker bridge network
on its pod CIDR (``pod_network``), iptables rules for forwarding and masquerade
(``iptables_rules``), routes to other nodes' pod CIDRs (``routes``), and pods' DNS settings
(``pod_dns``)."""
