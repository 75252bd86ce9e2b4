"""pykube's node agent: registers the node, reports its resources and runs its pods on Docker."""
