"""A failed local activity raises `ActivityError`, as a failed activity does, so the workflows'
handlers (record, escalate, roll back) see it instead of the whole workflow failing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.worker import Worker

from workflows.incident_rules import cause
from workflows.local_activity import execute_local


@activity.defn
async def unreachable(url: str) -> str:
    raise ConnectionRefusedError(f"{url}: connection refused")


@activity.defn
async def answers(url: str) -> str:
    return f"{url}: firing"


@workflow.defn
class CallsLocally:
    @workflow.run
    async def run(self, name: str) -> str:
        try:
            result: str = await execute_local(
                name,
                "http://am:9093",
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=2, initial_interval=timedelta(milliseconds=10)),
            )
        except ActivityError as err:
            return f"handled: {cause(err)}"
        return result


async def test_a_failed_local_activity_is_an_activity_error(time_env: Any) -> None:
    queue = uuid.uuid4().hex
    async with Worker(
        time_env.client, task_queue=queue, workflows=[CallsLocally], activities=[unreachable, answers]
    ):
        failed = await time_env.client.execute_workflow(
            CallsLocally.run, "unreachable", id=uuid.uuid4().hex, task_queue=queue
        )
        ok = await time_env.client.execute_workflow(
            CallsLocally.run, "answers", id=uuid.uuid4().hex, task_queue=queue
        )
    assert failed == "handled: ConnectionRefusedError: http://am:9093: connection refused"
    assert ok == "http://am:9093: firing"
