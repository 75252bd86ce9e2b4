"""Binding a gRPC server's port, the one way the master's servers (API, join, lease lane) do it."""

from __future__ import annotations

from collections.abc import Callable


def bind(address: str, add_port: Callable[[], int]) -> int:
    """Runs a server's add_*_port; returns the bound port. A failed bind becomes OSError (grpc
    raises RuntimeError), worded for the user."""
    try:
        return add_port()
    except RuntimeError as err:
        raise OSError(f"cannot listen on {address}: address in use or not available") from err
