"""The shared time-skipping server's per-test client ends what a test left running."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.support.time_skipping import TrackedEnvironment


@workflow.defn
class Waits:
    """Waits for ever, as an incident waiting for a decision does."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def started(self) -> bool:
        return True


@workflow.defn
class Parent:
    """Waits for ever with a child that does too, as an incident with its running fix."""

    @workflow.run
    async def run(self) -> None:
        await workflow.start_child_workflow(Waits.run, id=f"{workflow.info().workflow_id}-child")
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def started(self) -> bool:
        return True


async def test_workflows_a_test_started_and_left_running_are_ended(time_server: Any) -> None:
    env = TrackedEnvironment(time_server)
    queue = uuid.uuid4().hex
    async with Worker(env.client, task_queue=queue, workflows=[Waits, Parent]):
        left = await env.client.start_workflow(Parent.run, id=uuid.uuid4().hex, task_queue=queue)
        child = env.client.get_workflow_handle(f"{left.id}-child")
        finished = await env.client.start_workflow(Waits.run, id=uuid.uuid4().hex, task_queue=queue)
        untracked = await time_server.client.start_workflow(Waits.run, id=uuid.uuid4().hex, task_queue=queue)
        # Each past its first workflow task (the test server keeps its clock locked for one that
        # is terminated mid-task).
        for handle in (left, finished, untracked):
            assert await handle.query("started")
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the child starts once the parent's first task is done
            try:
                assert await child.query("started")
                break
            except RPCError:
                assert asyncio.get_running_loop().time() < deadline, "the child never started"
                await asyncio.sleep(0.1)
        await finished.terminate(reason="the test ended it itself")
        try:
            assert await env.end_started() == [child.id, left.id]
            for handle in (left, child):  # the child terminated, not asked to cancel
                assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
            assert (await untracked.describe()).status == WorkflowExecutionStatus.RUNNING
        finally:
            await untracked.terminate(reason="test over")
