"""The error hierarchy shared by every layer.

Rule 1: anything that came from outside (a peer, the control socket, a file) and is wrong raises
one of these, carrying a stable kebab-case ``code`` that logs and tests assert on.
Rule 2: any other exception is a bug and propagates.
"""

from __future__ import annotations

__all__ = [
    "CrowdmeshError",
    "DecodeError",
    "NotFound",
    "ProtocolViolation",
    "StoreError",
    "UsageError",
    "ValidationError",
]


class CrowdmeshError(Exception):
    """Root of every error crowdmesh raises on purpose."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


class DecodeError(CrowdmeshError):
    """Bytes that are not a well-formed message, object or element."""


class ValidationError(CrowdmeshError):
    """Well-formed input that breaks a rule; ``code`` is the stable reject reason."""

    @property
    def reason(self) -> str:
        return self.code


class ProtocolViolation(CrowdmeshError):
    """A message that is wrong for the receiving role or its current state."""


class UsageError(CrowdmeshError):
    """A local caller misused an API (as opposed to a remote peer sending bad data)."""


class NotFound(CrowdmeshError):
    """A looked-up object (block, transaction, task, key) does not exist."""


class StoreError(CrowdmeshError):
    """The node's own store cannot be used (damaged, empty, read-only, unopenable): neither a
    peer's fault nor a caller's, and retrying cannot help; the operator repairs or resyncs."""
