"""A short `make chaos` in `make test`: a few seeded fault trials on the real loop, as a subprocess.

The full run (50 trials) is `make chaos`; here five trials, five different fault kinds, must end
with no duplicate side effect, nothing lost and nothing stuck, and say so on the last line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.trials import KINDS, schedule
from tests.chaos.world import Remote, git

ROOT = Path(__file__).resolve().parents[2]
SEED = 3
VERDICT = re.compile(r"chaos: (\d+) trials, (\d+) duplicate side effects, (\d+) lost, (\d+) stuck")


def test_the_same_seed_plans_the_same_trials_and_deals_every_kind() -> None:
    plans = schedule(SEED, 16)
    assert plans == schedule(SEED, 16)
    assert plans != schedule(SEED + 1, 16)
    assert {p.kind for p in plans[: len(KINDS)]} == set(KINDS)
    assert {p.scenario for p in plans} == {"heal", "escalate"}


@pytest.mark.timeout(300)
def test_short_chaos_run_has_no_duplicate_loss_or_stuck_incident() -> None:
    kinds = {p.kind for p in schedule(SEED, 5)}
    assert len(kinds) == 5, kinds
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--seed", str(SEED), "--trials", "5", "--parallel", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert VERDICT.fullmatch(last), out[-5000:]
    assert last == "chaos: 5 trials, 0 duplicate side effects, 0 lost, 0 stuck", out[-5000:]
    assert proc.returncode == 0, out[-5000:]
    for kind in kinds:
        assert kind in proc.stdout, f"the table lacks {kind}"


def test_the_checks_see_a_second_fix_commit_and_deploy(tmp_path: Path) -> None:
    """What the run counts as duplicate side effects is what the remote really holds."""
    remote = Remote(tmp_path, ["svc-000"])
    for size in (20, 80):
        cfg = remote.work / "services" / "svc-000" / "config.yaml"
        cfg.write_text(f"pool:\n  size: {size}\n")
        git(remote.work, "commit", "-qam", "raise pool\n\nSelfheal-Incident: inc-1")
        git(remote.work, "push", "-q", "origin", "main")
    remote.refuse_pushes(True)
    cfg.write_text("pool:\n  size: 1\n")
    git(remote.work, "commit", "-qam", "refused\n\nSelfheal-Incident: inc-2")
    with pytest.raises(subprocess.CalledProcessError):
        git(remote.work, "push", "-q", "origin", "main")
    fixes, deploys, rollbacks = remote.side_effects()
    assert fixes == {"inc-1": 2} and deploys == {"inc-1": 2} and rollbacks == {}
    assert remote.pool_size("svc-000") == 80
