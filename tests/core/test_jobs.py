"""The child-process machinery: events, crashes, cancel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qtapp.core.jobs.events import Cancelled, Failed, Finished, Progress, Started
from qtapp.core.jobs.job import Job, JobSpec


def test_echo_streams_events_and_result() -> None:
    last, seen = Job(JobSpec("echo", {"value": 42, "steps": 3})).run()
    assert isinstance(last, Finished)
    assert last.result == {"echo": 42}
    assert isinstance(seen[0], Started)
    assert [e.fraction for e in seen if isinstance(e, Progress)] == pytest.approx([1 / 3, 2 / 3, 1])


@pytest.mark.parametrize(
    ("how", "words"), [("abort", "SIGABRT"), ("segv", "SIGSEGV"), ("kill", "SIGKILL")]
)
def test_a_crash_in_the_child_becomes_a_failed_event(how: str, words: str) -> None:
    last, _ = Job(JobSpec("crash", {"how": how})).run()
    assert isinstance(last, Failed)
    assert words in last.message
    assert last.hint


def test_unknown_job_kind_fails_cleanly() -> None:
    last, _ = Job(JobSpec("no-such-job")).run()
    assert isinstance(last, Failed)
    assert "Unknown job kind" in last.message


def test_cancel_kills_a_blocked_child() -> None:
    job = Job(JobSpec("sleep", {"seconds": 120}))
    events = job.events()
    assert isinstance(next(events), Started)
    assert isinstance(next(events), Progress)
    pid = job.pid
    assert pid is not None and job.is_running()
    job.cancel()
    assert not job.is_running()  # when cancel() returns the child has exited: poll() is set
    assert isinstance(next(events), Cancelled)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_job_cancelled_before_it_started_never_starts() -> None:
    job = Job(JobSpec("sleep", {"seconds": 120}))
    job.cancel()
    events = list(job.events())
    assert len(events) == 1 and isinstance(events[0], Cancelled)
    assert job.pid is None


def _niceness(pid: int) -> int:
    from pathlib import Path

    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
@pytest.mark.parametrize("for_the_window", [True, False])
def test_the_windows_jobs_yield_the_cpu_to_it(for_the_window: bool) -> None:
    from qtapp.core.jobs.job import WINDOW_JOB_NICENESS

    job = Job(JobSpec("sleep", {"seconds": 60}), yield_to_window=for_the_window)
    events = job.events()
    assert isinstance(next(events), Started)  # the child is past its start-up
    try:
        expected = _niceness(os.getpid()) + (WINDOW_JOB_NICENESS if for_the_window else 0)
        assert _niceness(job.pid) == min(expected, 19)
        group = f"/proc/{job.pid}/autogroup"  # Linux: the session's share counts first
        if os.path.exists(group):
            with open(group, encoding="ascii") as fh:
                group_nice = int(fh.read().split("nice")[1])
            assert group_nice == min(expected, 19)  # 0 when neither lowered it
    finally:
        job.cancel()
    assert isinstance(list(events)[-1], Cancelled)


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="Linux autogroup")
def test_a_niced_command_keeps_its_priority_in_its_workers() -> None:
    """``nice -n 3 quantlens ...``: the worker (a session of its own) is niced as a session."""
    import json
    import shutil
    import subprocess

    from qtapp.core.jobs.job import worker_command

    nice = shutil.which("nice")
    if nice is None:
        pytest.skip("no nice command")
    parent = _niceness(os.getpid())
    proc = subprocess.Popen(
        [nice, "-n", "3", *worker_command()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps({"kind": "sleep", "params": {"seconds": 60}}) + "\n").encode())
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["kind"] == "started"
        with open(f"/proc/{proc.pid}/autogroup", encoding="ascii") as fh:
            group_nice = int(fh.read().split("nice")[1])
        assert group_nice == min(parent + 3, 19) == _niceness(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
