"""One time-skipping test server shared by many tests, each ending what it started.

The server's clock is shared: a workflow a test leaves running (an incident waiting for a decision
whose re-escalation is an activity no worker polls any more) freezes virtual time for every later
test. `TrackedEnvironment` hands each test a client that notes every workflow started through it
(including those started by the test's worker, which uses the same client), and `end_started`
terminates whichever are still running when the test is over."""

from __future__ import annotations

from typing import Any

from temporalio import client as temporal_client
from temporalio.client import OutboundInterceptor, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment


class StartedWorkflows(temporal_client.Interceptor):
    """Notes the id of every workflow started (or signal-with-started) through the client."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Noting(next, self.ids)


class _Noting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ids: list[str]) -> None:
        super().__init__(next)
        self._ids = ids

    async def start_workflow(self, input: temporal_client.StartWorkflowInput) -> Any:
        handle = await super().start_workflow(input)
        if input.id not in self._ids:
            self._ids.append(input.id)
        return handle


class TrackedEnvironment:
    """The shared environment with a per-test client; everything else is the environment's own."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self._env = env
        self.started = StartedWorkflows()
        config = env.client.config()
        config["interceptors"] = [*config["interceptors"], self.started]
        self.client = temporal_client.Client(**config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    async def end_started(self) -> list[str]:
        """Terminate what this test started and left running, children first; returns their ids.

        Children go first and by termination: a parent's end would only ask them to cancel, and
        a cancelled child's clean-up (activities no worker polls any more) keeps the clock locked."""
        ended: list[str] = []
        for workflow_id in reversed(self.started.ids):
            await self._end(workflow_id, ended)
        return ended

    async def _end(self, workflow_id: str, ended: list[str]) -> None:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            description = await handle.describe()
        except RPCError:
            return  # never started
        if description.status != WorkflowExecutionStatus.RUNNING:
            return
        for child in description.raw_description.pending_children:
            await self._end(child.workflow_id, ended)
        try:
            await handle.terminate(reason="test over")
        except RPCError:
            return  # finished meanwhile
        ended.append(workflow_id)
