"""Dispatch per role and per protocol instance (pure): one event reaches each role that takes
it with that role's own handler; instances are created by their first event, dropped when a
handler ends them, and outcome events reach only the instance they are addressed to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from crowdmesh.roles import (
    AddressedEvent,
    Event,
    LogEvent,
    Role,
    RoleContext,
    Route,
    addressed,
    dispatch,
    live_instances,
)

CTX = RoleContext(now=1)


@dataclass(frozen=True, slots=True)
class TaskSeen(Event):
    TYPE: ClassVar[str] = "test-task-seen"
    task: str
    done: bool = False


@dataclass(frozen=True, slots=True)
class Tick(Event):
    TYPE: ClassVar[str] = "test-tick"


@dataclass(frozen=True, slots=True)
class Answer(AddressedEvent):
    TYPE: ClassVar[str] = "test-answer"
    value: int


def _by_task(event, role, live, ctx):
    return (event.task,)


def worker_seen(state, event, ctx):
    if event.done:
        return None, [LogEvent("worker-done", (("task", event.task),))]
    return (state or 0) + 1, []


def csp_seen(state, event, ctx):
    return "csp-" + event.task, [LogEvent("csp-saw", (("task", event.task),))]


def count(state, event, ctx):
    return state + 100, []


TABLE = {
    TaskSeen.TYPE: {Role.WORKER: Route(worker_seen, _by_task),
                    Role.CSP: Route(csp_seen, _by_task)},
    Tick.TYPE: {Role.WORKER: Route(count, live_instances)},
    Answer.TYPE: {Role.WORKER: Route(count, addressed), Role.CSP: Route(count, addressed)},
}
BOTH = frozenset({Role.WORKER, Role.CSP})


def test_one_event_reaches_each_role_with_its_own_handler_per_instance():
    states, effects = dispatch(BOTH, {}, TaskSeen("t1"), CTX, table=TABLE)
    assert states == {Role.WORKER: {"t1": 1}, Role.CSP: {"t1": "csp-t1"}}
    assert [(r.role, r.instance, r.effect.event) for r in effects] == [
        (Role.CSP, "t1", "csp-saw")]  # roles in name order, tagged with their instance
    states, _ = dispatch(BOTH, states, TaskSeen("t2"), CTX, table=TABLE)
    states, _ = dispatch(BOTH, states, TaskSeen("t1"), CTX, table=TABLE)
    assert states[Role.WORKER] == {"t1": 2, "t2": 1}


def test_a_handler_returning_none_ends_the_instance():
    states, _ = dispatch(BOTH, {}, TaskSeen("t1"), CTX, table=TABLE)
    states, effects = dispatch(BOTH, states, TaskSeen("t1", done=True), CTX, table=TABLE)
    assert "t1" not in states[Role.WORKER] and states[Role.CSP] == {"t1": "csp-t1"}
    assert (effects[0].role, effects[0].instance) == (Role.CSP, "t1")


def test_live_instances_and_addressed_routes():
    states, _ = dispatch(BOTH, {}, TaskSeen("a"), CTX, table=TABLE)
    states, _ = dispatch(BOTH, states, TaskSeen("b"), CTX, table=TABLE)
    states, _ = dispatch(BOTH, states, Tick(), CTX, table=TABLE)
    assert states[Role.WORKER] == {"a": 101, "b": 101}
    states, _ = dispatch(BOTH, states, Answer("worker", "b", 5), CTX, table=TABLE)
    assert states[Role.WORKER] == {"a": 101, "b": 201}
    assert states[Role.CSP] == {"a": "csp-a", "b": "csp-b"}  # not addressed to the CSP


def test_roles_the_node_lacks_are_never_run():
    states, effects = dispatch(frozenset({Role.WORKER}), {}, TaskSeen("t"), CTX, table=TABLE)
    assert states == {Role.WORKER: {"t": 1}} and effects == []
