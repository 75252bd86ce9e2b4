"""pykube's master: API types, the gRPC server, the store, the scheduler, controllers and pyctl."""
