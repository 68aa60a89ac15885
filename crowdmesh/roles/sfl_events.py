"""The events of the CrowdSFL roles (requester, worker, CSP) that the chain does not bring.

Invariants:
- :class:`SflConfigured` is what the daemon sends each role at start (and on reload), addressed
  to the role's singleton instance ``""``: the role's long-term secret seed, the ElGamal secret
  key (requester, CSP) and the dataset (worker: training rows; requester: held-out rows). The
  role keeps it in its private store; the seed of the first configuration is kept across
  restarts, so every job a role runs again after a restart makes the same bytes (the call
  service then sends nothing twice).
- Operator intents (:class:`SflTaskRequested`, :class:`SflJoinRequested`) come from the control
  socket or the config; they are idempotent (a request id, a task id).
- :class:`SflTaskSeen` wakes one task instance (``instance`` = the task id in hex): the role
  rebuilds it from its store and the chain view. Handlers are not told their instance key, so
  a role creates or resumes a task through this addressed event (``ScheduleAt`` at ``now``).
- Events carry plain values only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from crowdmesh.roles.events import AddressedEvent, Event

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "SflConfigured",
    "SflJoinRequested",
    "SflTaskRequested",
    "SflTaskSeen",
]

Behaviour = Literal["honest", "free-rider", "label-flip", "random-weights"]
BEHAVIOURS: tuple[Behaviour, ...] = ("honest", "free-rider", "label-flip", "random-weights")
_MAX_REQUEST_ID = 128


@dataclass(frozen=True, slots=True)
class SflConfigured(AddressedEvent):
    """One CrowdSFL role's configuration (``role`` = requester, worker or csp; ``instance``
    = ``""``).

    Attributes:
        seed: 32 secret random bytes (the daemon draws them from ``secrets``); every nonce,
            permutation and training order of the role is derived from it. Only the first
            configuration's seed is kept (restart determinism).
        profile: the crypto profile of ``secret_key``.
        secret_key: the ElGamal secret exponent, big-endian (requester and CSP; its public key
            must be registered on chain with ``register-key``).
        dataset: :func:`crowdmesh.roles.sfl_jobs.dataset_bytes` of the encoded rows (worker:
            its training data, n_k = its row count; requester: its held-out data).
        auto_join: the worker joins every new task whose input width matches its data.
        behaviour: ``honest``, or a simulated attacker for tests and demos (``free-rider``
            re-uploads the global model, ``label-flip`` trains on flipped labels,
            ``random-weights`` uploads noise).

    Raises:
        ValueError: a seed that is not 32 bytes, or an unknown behaviour.
    """

    TYPE: ClassVar[str] = "sfl-configured"
    seed: bytes = b""
    profile: str = "default"
    secret_key: bytes = b""
    dataset: bytes = b""
    auto_join: bool = False
    behaviour: Behaviour = "honest"

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("seed must be 32 bytes")
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {self.behaviour!r}")


@dataclass(frozen=True, slots=True)
class SflTaskRequested(Event):
    """The operator asks to create a task (``task create``): ``spec`` is the ``sfl-create``
    payload (``crowdsfl.create_payload``); asking twice with one ``request_id`` creates once.

    Raises:
        ValueError: a request id that is empty or longer than 128 characters.
    """

    TYPE: ClassVar[str] = "sfl-task-requested"
    request_id: str
    spec: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.request_id) <= _MAX_REQUEST_ID:
            raise ValueError("request_id: 1..128 characters")


@dataclass(frozen=True, slots=True)
class SflJoinRequested(Event):
    """The operator asks the worker to join task ``task_id`` (``task join ID``).

    Raises:
        ValueError: a task id that is not 32 bytes.
    """

    TYPE: ClassVar[str] = "sfl-join-requested"
    task_id: bytes

    def __post_init__(self) -> None:
        if len(self.task_id) != 32:
            raise ValueError("task_id must be 32 bytes")


@dataclass(frozen=True, slots=True)
class SflTaskSeen(AddressedEvent):
    """Task ``instance`` (hex task id) of ``role`` concerns this node: create or rebuild it
    from the store and the chain view (at start, when a task names us, on a join request)."""

    TYPE: ClassVar[str] = "sfl-task-seen"
