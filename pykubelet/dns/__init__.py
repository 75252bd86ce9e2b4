"""The node-local cluster DNS server: every agent answers its pods' queries for the cluster domain
from its view of Services and EndpointSlices (``records``), and forwards other names to the
host's resolvers (``forward``), on UDP and TCP port 53 of its pod network's gateway (``server``).
"""
