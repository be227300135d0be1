"""A background call is deleted only once its thread is done with it (never mid-emit)."""

from __future__ import annotations

import threading

import pytest
import shiboken6

from qtapp.ui.common.background import BackgroundCall

pytestmark = pytest.mark.timeout(60)


def test_delete_when_done_waits_for_the_call_and_its_finished_signal(qtbot) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    seen: list[str] = []
    call = BackgroundCall(lambda _call: release.wait(10), "test-delete-when-done")
    call.finished.connect(lambda _result: seen.append("finished"))
    call.destroyed.connect(lambda *_: seen.append("destroyed"))
    call.start()
    call.delete_when_done()  # asked while the call still runs
    qtbot.waitUntil(lambda: call.is_running(), timeout=5000)
    assert shiboken6.isValid(call) and seen == []
    release.set()
    qtbot.waitUntil(lambda: "destroyed" in seen, timeout=10_000)
    assert seen == ["finished", "destroyed"]  # the result was delivered first
    assert not shiboken6.isValid(call)
