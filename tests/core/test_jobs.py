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
        # a session of its own (with autogroup scheduling the CPU is shared between sessions
        # first: in the window's session the job spent the window's share), which is also a
        # process group of its own (cancel signals the group)
        assert os.getsid(job.pid) == job.pid != os.getsid(0)
        assert os.getpgid(job.pid) == job.pid
    finally:
        job.cancel()
    assert isinstance(list(events)[-1], Cancelled)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_every_job_a_window_starts_yields_to_it() -> None:
    """The window's dry runs and quantizations are started by core code the CLI shares."""
    from qtapp.core.jobs import job as job_module

    job_module.start_jobs_for_a_window()
    try:
        job = Job(JobSpec("sleep", {"seconds": 60}))
    finally:
        job_module.start_jobs_for_a_window(False)
    events = job.events()
    assert isinstance(next(events), Started)
    try:
        assert _niceness(job.pid) == min(
            _niceness(os.getpid()) + job_module.WINDOW_JOB_NICENESS, 19
        )
    finally:
        job.cancel()
    assert not Job(JobSpec("sleep", {"seconds": 60})).yield_to_window  # the CLI's own
