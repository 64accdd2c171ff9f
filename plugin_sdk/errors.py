"""The one exception tree plugins raise and the host maps onto each protocol's error shape.

    FlowbaseError                (kind, status, message)
    ├── InvalidRequest           400 invalid_request   the client's request cannot be served
    ├── NotFound                 404 not_found          unknown model / run / workflow
    ├── NodeError                500 api_error          a node failed (bad config, off-schema output, crash)
    │   ├── NodeTimeout          504 timeout            a node ran past its deadline and was cancelled
    │   └── RunnerCrashed        502 api_error          the plugin runner process died mid-request
    └── UpstreamError            upstream's status      a provider answered with an error; status and
                                                        message are the upstream's own

``kind`` is protocol-neutral; host/protocols maps it to OpenAI ``type``/``code`` and Anthropic
``error.type``. Messages must never contain secrets (the host redacts known secret values anyway).
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "invalid_request", "authentication", "permission", "not_found", "rate_limit",
    "api_error", "overloaded", "timeout",
]


def kind_for_status(status: int) -> ErrorKind:
    """The error kind an HTTP status stands for (used for upstream errors)."""
    if status == 401:
        return "authentication"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if 400 <= status < 500:
        return "invalid_request"
    return "api_error"


class FlowbaseError(Exception):
    kind: ErrorKind = "api_error"
    status: int = 500

    def __init__(self, message: str, *, status: int | None = None, kind: ErrorKind | None = None,
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.param = param
        self.code = code


class InvalidRequest(FlowbaseError):
    kind = "invalid_request"
    status = 400


class NotFound(FlowbaseError):
    kind = "not_found"
    status = 404


class NodeError(FlowbaseError):
    kind: ErrorKind = "api_error"
    status = 500


class NodeTimeout(NodeError):
    kind = "timeout"
    status = 504


class RunnerCrashed(NodeError):
    kind = "api_error"
    status = 502


class UpstreamError(FlowbaseError):
    """A provider's own error. ``status`` and ``message`` are what the upstream said, so the
    client's SDK reacts (retries a 429/5xx) exactly as it would against the provider."""

    def __init__(self, message: str, *, status: int, kind: ErrorKind | None = None,
                 retry_after: str | None = None, code: str | None = None) -> None:
        super().__init__(message, status=status, kind=kind or kind_for_status(status), code=code)
        self.retry_after = retry_after
