"""A worker child dies with its parent: SIGKILL the CLI mid-quantize and mid-evaluation.

The child notices through its lifeline (stdin reaches end-of-file when the parent is gone),
removes its partial output and exits; the next start shows the run as interrupted, in the CLI
and in the window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qtapp.testing.tiny import TinySpec, write_tiny_llama

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="reads /proc and sends SIGKILL")

#: a hang guard, not a timing: the child normally goes in well under a second
GONE_WITHIN = 20.0


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough (about 270 MB F16) that quantizing and evaluating take seconds here."""
    spec = TinySpec(n_embd=1024, n_ff=4096, n_layer=8, n_head=8, n_head_kv=4, n_ctx_train=4096)
    return write_tiny_llama(tmp_path_factory.mktemp("slow") / "slow-llama-F16.gguf", spec)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, QUANTLENS_HOME=str(home), PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"--worker" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may be slow to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill_parent_and_wait_for_child(parent: subprocess.Popen[bytes], child: int) -> float:
    t0 = time.monotonic()
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    _wait(lambda: not _alive(child), GONE_WITHIN, "the orphaned worker to exit")
    return time.monotonic() - t0


def _kill_cli_quantize_mid_write(model: Path, out: Path, home: Path) -> float:
    """Start ``quantlens quantize``, SIGKILL it once its worker writes; seconds until the
    orphaned worker was gone."""
    command = [sys.executable, "-m", "qtapp", "quantize", str(model), "--type", "Q6_K"]
    parent = subprocess.Popen(
        [*command, "--out", str(out)],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: bool(list(out.glob("*.part"))), 120, "the quantizer to start writing")
        children = _children(parent.pid)
        assert len(children) == 1
        return _kill_parent_and_wait_for_child(parent, children[0])
    finally:
        if parent.poll() is None:
            parent.kill()


def _results(home: Path) -> tuple[list[dict], str]:
    done = subprocess.run(
        [sys.executable, "-m", "qtapp", "results", "--format", "json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return (data["runs"] if isinstance(data, dict) else data), done.stderr


def test_killed_cli_quantize_leaves_no_worker_and_no_partial_file(
    slow_model: Path, tmp_path: Path
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    took = _kill_cli_quantize_mid_write(slow_model, out, home)
    print(f"orphaned quantize worker gone {took:.2f} s after its parent's SIGKILL")
    assert list(out.iterdir()) == []  # neither a .part nor a finished-looking file

    runs, note = _results(home)
    quantize_runs = [r for r in runs if r["kind"] == "quantize"]
    assert [r["state"] for r in quantize_runs] == ["interrupted"]
    assert "interrupted" in note


def test_killed_cli_evaluation_leaves_no_worker_and_an_interrupted_run(
    slow_model: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qtapp",
            "eval",
            str(slow_model),
            "--ctx",
            "256",
            "--chunks",
            "400",
            "--threads",
            "1",
            "--json",
        ],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert parent.stdout is not None
        first = parent.stdout.readline()  # the first scored chunk: the run is well under way
        assert b"ppl" in first
        children = _children(parent.pid)
        assert len(children) == 1
        took = _kill_parent_and_wait_for_child(parent, children[0])
    finally:
        if parent.poll() is None:
            parent.kill()
    print(f"orphaned evaluation worker gone {took:.2f} s after its parent's SIGKILL")
    runs, _note = _results(home)
    assert [r["state"] for r in runs if r["kind"] == "eval"] == ["interrupted"]


def test_the_window_shows_a_killed_run_as_interrupted(
    qtbot,
    slow_model: Path,
    tmp_path: Path,
    quantlens_home: Path,  # noqa: ANN001
) -> None:
    _kill_cli_quantize_mid_write(slow_model, tmp_path / "out", quantlens_home)

    from qtapp.ui.common.context import AppContext
    from qtapp.ui.compare.page import Page

    page = Page(AppContext())
    qtbot.addWidget(page)
    assert page.recovery is not None and len(page.recovery.interrupted) == 1
    assert "interrupted" in page.recovery.message()
    qtbot.waitUntil(lambda: any(r.state == "interrupted" for r in page.runs), timeout=10_000)
