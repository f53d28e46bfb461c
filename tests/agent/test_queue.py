"""The agent job queue: one agent per job, leases that expire, late agents shut out."""

from __future__ import annotations

from pathlib import Path

from dataferry.agent.queue import AgentJobs
from dataferry.metadata import Metadata
from tests.conftest import FakeClock


def test_a_job_goes_to_one_agent_of_its_network(db: Metadata, clock: FakeClock) -> None:
    queue = AgentJobs(db, clock)
    job = queue.submit("ingest:crm.customers", "hq-lan", "ingest", {"dataset": "crm.customers"})
    assert queue.claim("branch-lan", 1) is None  # another network's agent gets nothing
    claimed = queue.claim("hq-lan", 1)
    assert claimed is not None and (claimed.id, claimed.attempt) == (job.id, 1)
    assert claimed.payload == {"dataset": "crm.customers"}
    assert queue.claim("hq-lan", 2) is None  # taken
    assert queue.running_for(1) is not None and queue.running_for(2) is None
    assert queue.finish(job.id, 1, 1, ok=True, result={"rows": 3})
    done = queue.get(job.id)
    assert done is not None and (done.state, done.result) == ("done", {"rows": 3})


def test_an_expired_lease_gives_the_job_to_the_next_agent(db: Metadata, clock: FakeClock) -> None:
    queue = AgentJobs(db, clock, lease_seconds=60)
    job = queue.submit("ingest:crm.customers", "hq-lan", "ingest", {})
    assert queue.claim("hq-lan", 1) is not None
    clock.advance(30)
    assert queue.holds(job.id, 1, 1) is not None  # a contact renews: 60 s from now
    clock.advance(59)
    assert queue.claim("hq-lan", 2) is None  # still agent 1's
    clock.advance(2)  # agent 1 went silent: its lease ran out
    second = queue.claim("hq-lan", 2)
    assert second is not None and (second.attempt, second.agent_id) == (2, 2)
    # agent 1 comes back: it can neither renew, nor report the old attempt
    assert queue.holds(job.id, 1, 1) is None
    assert not queue.finish(job.id, 1, 1, ok=True, result={})
    assert queue.finish(job.id, 2, 2, ok=True, result={})


def test_a_cancelled_job_is_offered_to_nobody(db: Metadata, clock: FakeClock) -> None:
    queue = AgentJobs(db, clock)
    job = queue.submit("ingest:crm.customers", "hq-lan", "ingest", {})
    assert queue.cancel(job.id)
    assert queue.claim("hq-lan", 1) is None
    assert not queue.cancel(job.id)


def test_a_job_whose_waiting_run_died_is_not_handed_out(db: Metadata, clock: FakeClock) -> None:
    from dataferry.metadata import RunHistory

    runs = RunHistory(db, now=clock)
    queue = AgentJobs(db, clock)
    alive = runs.start_run("ingest:crm.a", "ingest", "manual", 1, "hub:1", 300)
    killed = runs.start_run("ingest:crm.b", "ingest", "manual", 1, "hub:2", 300)
    ended = runs.start_run("ingest:crm.c", "ingest", "manual", 1, "hub:3", 300)
    runs.finish_run(ended, "failed", error="interrupted")
    first = queue.submit("ingest:crm.b", "hq-lan", "ingest", {}, run_id=killed)
    second = queue.submit("ingest:crm.c", "hq-lan", "ingest", {}, run_id=ended)
    third = queue.submit("ingest:crm.a", "hq-lan", "ingest", {}, run_id=alive)
    clock.advance(200)
    runs.heartbeat(alive, 300)  # its ferry run is alive and waiting; the other was killed
    clock.advance(200)
    claimed = queue.claim("hq-lan", 1)
    assert claimed is not None and claimed.id == third.id
    assert [(j.state, j.error) for j in (queue.get(first.id), queue.get(second.id)) if j] == [
        ("cancelled", "its run on the hub ended before an agent took it")] * 2


def test_gc_sweeps_uploads_no_one_will_publish(db: Metadata, clock: FakeClock,
                                                tmp_path: Path) -> None:
    """A ``ferry run`` killed while its agent worked leaves the agent's uploads behind:
    they go an hour after the job ended, never while it is queued or running."""
    from dataferry.agent.uploads import Uploads

    queue = AgentJobs(db, clock)
    uploads = Uploads(tmp_path)
    done = queue.submit("ingest:crm.a", "hq-lan", "ingest", {})
    running = queue.submit("ingest:crm.b", "hq-lan", "ingest", {})
    assert queue.claim("hq-lan", 1) is not None and queue.claim("hq-lan", 1) is not None
    assert queue.finish(done.id, 1, 1, ok=True, result={})
    for job_id in (done.id, running.id, 999):  # 999: a job the queue no longer has
        path = uploads.path(job_id, 1, "part-00000.parquet")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 10)
    assert uploads.sweep(queue.ended_at, queue.now()) == (1, 10)  # only the unknown one
    clock.advance(3601)
    assert queue.ended_at(running.id) is None  # its lease ran out: queued again, not ended
    assert uploads.sweep(queue.ended_at, queue.now()) == (1, 10)
    assert sorted(p.name for p in uploads.root.iterdir()) == [str(running.id)]


def test_a_running_job_whose_waiting_run_ended_is_taken_from_its_agent(
        db: Metadata, clock: FakeClock) -> None:
    from dataferry.metadata import RunHistory

    runs = RunHistory(db, now=clock)
    queue = AgentJobs(db, clock, lease_seconds=3600)  # the agents' leases hold throughout
    killed = runs.start_run("ingest:crm.b", "ingest", "manual", 1, "hub:2", 300)
    abandoned = runs.start_run("ingest:crm.c", "ingest", "manual", 1, "hub:3", 300)
    first = queue.submit("ingest:crm.b", "hq-lan", "ingest", {}, run_id=killed)
    second = queue.submit("ingest:crm.c", "hq-lan", "ingest", {}, run_id=abandoned)
    assert queue.claim("hq-lan", 1) is not None and queue.claim("hq-lan", 2) is not None
    assert queue.holds(first.id, 1, 1) is not None  # its run is alive: the agent keeps it
    clock.advance(40)
    runs.heartbeat(abandoned, 300)  # this ferry run lives on; the other was killed
    assert queue.holds(second.id, 2, 1) is not None
    clock.advance(290)  # the killed run's lease ran out
    assert queue.holds(first.id, 1, 1) is None  # refused: nobody waits for it any more
    assert runs.mark_abandoned(abandoned) is False  # still alive (lease renewed at 40 s)
    clock.advance(100)
    assert runs.mark_abandoned(abandoned)  # now a scheduler declared it abandoned
    assert not queue.finish(second.id, 2, 1, ok=True, result={"files": []})
    assert [(j.state, (j.error or "")[:37]) for j in (queue.get(first.id), queue.get(second.id))
            if j] == [("cancelled", "its run on the hub ended while an age")] * 2
    assert queue.ended_before("ingest:crm.b", first.id + 10) == [first.id]
