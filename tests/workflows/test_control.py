"""The control workflow under a burst: every request answered, the breaker exact, retries idempotent.

Requests go through the real `acquire_run` activity on a real worker and dev server, asked by
a probe workflow on its own task queue (as the incident workflow asks in production).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from models.control import PauseRequest, RunGrant, RunRequest
from models.ids import control_workflow_id
from selfheal.auth import Principal, effective_roles
from selfheal.control import get_state, set_paused
from selfheal.settings import Settings
from selfheal.worker import build_worker
from tests.support.app import make_settings
from workflows.control import ControlWorkflow


@workflow.defn
class AcquireProbe:
    """Asks for one run the way IncidentWorkflow does and returns the answer."""

    @workflow.run
    async def run(self, req: RunRequest, task_queue: str) -> RunGrant:
        grant: RunGrant = await workflow.execute_activity(
            "acquire_run",
            req,
            result_type=RunGrant,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return grant


def request(incident: str, target: str, *, max_runs: int = 10, approved: bool = False) -> RunRequest:
    return RunRequest(
        playbook="pool",
        target=target,
        incident_id=incident,
        max_runs=max_runs,
        window_seconds=3600,
        cooldown_seconds=600,
        approved=approved,
    )


async def ask(client: Client, settings: Settings, probe_queue: str, req: RunRequest) -> RunGrant:
    grant: RunGrant = await client.execute_workflow(
        AcquireProbe.run,
        args=[req, settings.temporal.task_queue],
        id=f"probe-{uuid.uuid4().hex}",
        task_queue=probe_queue,
        execution_timeout=timedelta(seconds=120),
    )
    return grant


async def test_a_burst_of_requests_is_answered_and_the_breaker_is_exact(
    temporal_address: str, tmp_path: Path
) -> None:
    settings = make_settings(temporal_address, tmp_path)
    client = await connect(settings.temporal)
    probe_queue = settings.temporal.task_queue + "-probe"
    async with (
        build_worker(client, settings, LocalTracker(settings.local_db_path)),
        Worker(
            client,
            task_queue=probe_queue,
            workflows=[AcquireProbe],
            # The probe is test scaffolding; this module's imports are not sandbox-safe.
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        grants = await asyncio.gather(
            *(ask(client, settings, probe_queue, request(f"inc-{i}", f"target-{i}")) for i in range(60))
        )
        allowed = [g for g in grants if g.allowed]
        assert len(allowed) == 10, [g.reason for g in grants]
        assert all("circuit open: pool ran 10 times" in g.reason for g in grants if not g.allowed)

        # Asked again (a retry after a lost answer), a granted incident is granted again, not counted twice.
        granted_ids = {f"inc-{i}" for i, g in enumerate(grants) if g.allowed}
        again = await ask(client, settings, probe_queue, request(sorted(granted_ids)[0], "anything"))
        assert again == RunGrant(allowed=True, reason="already granted to this incident")
        state = await get_state(client, settings)
        assert {r.incident_id for r in state.runs["pool"]} == granted_ids

        # A new target of another playbook under the global pause: refused unless a human approved it.
        oncall = Principal(name="oncall", roles=effective_roles(["approver"]), via="token")
        await set_paused(
            client, settings, PauseRequest(paused=True, by="oncall", reason="maintenance"), oncall
        )
        paused, approved = await asyncio.gather(
            ask(
                client,
                settings,
                probe_queue,
                request("inc-p", "other", max_runs=100).model_copy(update={"playbook": "cache"}),
            ),
            ask(
                client,
                settings,
                probe_queue,
                request("inc-a", "other2", max_runs=100, approved=True).model_copy(
                    update={"playbook": "cache"}
                ),
            ),
        )
        assert paused == RunGrant(
            allowed=False, reason="autonomous remediation is paused by oncall: maintenance"
        )
        assert approved.allowed

        # The burst was decided in batches: far fewer grant deliveries than requests.
        history = await client.get_workflow_handle(
            control_workflow_id(settings.temporal.task_queue)
        ).fetch_history()
        deliveries = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
        assert 1 <= len(deliveries) < 63

        # Today's history replays against today's code (committed ones: tests/workflows/test_replay.py).
        replayer = Replayer(workflows=[ControlWorkflow], data_converter=pydantic_data_converter)
        await replayer.replay_workflow(history)
        name = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
        if name.startswith("control-"):
            (Path(__file__).parent / "histories" / f"{name}.json").write_text(history.to_json())


def bounded(incident: str, opened_minute: int, *, approved: bool = False, lease: float = 3600) -> RunRequest:
    """A request under a bound of one run at a time, from an incident opened at that minute."""
    return request(incident, f"target-{incident}", max_runs=100, approved=approved).model_copy(
        update={
            "max_concurrent": 1,
            "opened_at": datetime(2026, 1, 1, 12, opened_minute, tzinfo=UTC),
            "lease_seconds": lease,
        }
    )


async def test_bounded_runs_are_admitted_oldest_incident_first(temporal_address: str, tmp_path: Path) -> None:
    settings = make_settings(temporal_address, tmp_path)
    client = await connect(settings.temporal)
    probe_queue = settings.temporal.task_queue + "-probe"
    control = client.get_workflow_handle(control_workflow_id(settings.temporal.task_queue))

    async def waiting() -> list[str]:
        return [t.request.incident_id for t in (await get_state(client, settings)).waiting]

    async def until_waiting(n: int) -> None:
        while len(await waiting()) != n:
            await asyncio.sleep(0.1)

    async with (
        build_worker(client, settings, LocalTracker(settings.local_db_path)),
        Worker(
            client,
            task_queue=probe_queue,
            workflows=[AcquireProbe],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        first = await ask(client, settings, probe_queue, bounded("inc-late", 50))
        assert first == RunGrant(allowed=True, slot=True)

        # Three more arrive while the only slot is taken, newest incident first: all wait.
        asks = {}
        for incident, minute in (("inc-c", 30), ("inc-a", 10), ("inc-b", 20)):
            asks[incident] = asyncio.create_task(
                ask(client, settings, probe_queue, bounded(incident, minute))
            )
            await until_waiting(len(asks))
        # A human approved this one: it goes before every autonomous run, however young.
        asks["inc-approved"] = asyncio.create_task(
            ask(client, settings, probe_queue, bounded("inc-approved", 59, approved=True))
        )
        await until_waiting(4)

        admitted = []
        holder = "inc-late"
        for left in (3, 2, 1, 0):
            await control.signal("release_run", holder)
            done, _ = await asyncio.wait(asks.values(), return_when=asyncio.FIRST_COMPLETED, timeout=60)
            assert len(done) == 1, "one slot frees, one run is admitted"
            holder = next(i for i, t in asks.items() if t in done)
            assert asks.pop(holder).result() == RunGrant(allowed=True, slot=True)
            admitted.append(holder)
            assert len(await waiting()) == left
        assert admitted == ["inc-approved", "inc-a", "inc-b", "inc-c"]

        # A slot whose release never comes (the incident was terminated) frees itself at its lease.
        await control.signal("release_run", holder)
        assert (await ask(client, settings, probe_queue, bounded("inc-lost", 1, lease=2))).slot
        started = asyncio.get_running_loop().time()
        assert (await ask(client, settings, probe_queue, bounded("inc-next", 2))).allowed
        assert asyncio.get_running_loop().time() - started >= 1.0

        history = await control.fetch_history()
        replayer = Replayer(workflows=[ControlWorkflow], data_converter=pydantic_data_converter)
        await replayer.replay_workflow(history)
        name = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
        if name.startswith("control-"):
            (Path(__file__).parent / "histories" / f"{name}.json").write_text(history.to_json())
