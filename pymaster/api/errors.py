"""The API's error taxonomy, shared by the store, the servers and the client.

Each error maps to one gRPC status code, so a servicer turns any of them into the right status
and pyctl prints the message on one line.
"""

from __future__ import annotations

import grpc


class ApiError(Exception):
    """Base of every error the API reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(ApiError):
    """Bad input. The message starts with the field path: ``spec.containers[0].image: required``."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Conflict(ApiError):
    """An update carried a stale metadata.resourceVersion."""

    code = grpc.StatusCode.ABORTED


class TooOld(ApiError):
    """A watch asked to resume from a resourceVersion the event log no longer holds: relist."""

    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(ApiError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ApiError):
    code = grpc.StatusCode.UNAVAILABLE


class MethodNotAllowed(ApiError):
    """The kind does not support this verb (nodes are not created through the API, say)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class ResourceExhausted(ApiError):
    """The caller holds more of a bounded resource (streams, join attempts) than it may."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ApiError):
    """The caller's identity is not (or no longer) accepted: an unknown certificate subject, a
    revoked node certificate, a wrong join token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Forbidden(ApiError):
    """The caller is known but may not do this: the per-RPC role table or the admission policy."""

    code = grpc.StatusCode.PERMISSION_DENIED
