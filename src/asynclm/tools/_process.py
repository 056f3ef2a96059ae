"""Running a program from an async tool, so that a timeout or a cancellation leaves no process
behind.

``asyncio`` does not stop a child process when the task awaiting it is cancelled: a tool that
times out would leave its program running (and its side effects happening) after the runtime has
reported ``timeout``. :func:`run_process` starts the program in a process group of its own and,
when the awaiting task is cancelled (a timeout, ``RunControl.cancel_call``, the model's built-in
``cancel(call_id)``, the session ending), kills the whole group with SIGKILL (the program and
anything it started, even once the program itself has exited) and reaps the program before the
cancellation goes on. A process that leaves the group (``setsid``) is out of its reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ProcessResult", "run_process"]


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """A finished program: its exit status and what it wrote (decoded as UTF-8, invalid bytes
    replaced)."""

    returncode: int
    stdout: str
    stderr: str


async def run_process(
    *argv: str,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``argv`` (no shell) to its end and return its result; a non-zero exit status is a
    result, not an error. If the awaiting task is cancelled (a tool timeout, a cancelled call,
    the session ending), the program's process group is killed and reaped, then the
    cancellation propagates. Raises ``FileNotFoundError``/``PermissionError`` if ``argv[0]``
    cannot be run."""
    if not argv:
        raise ValueError("run_process() needs a program to run")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=os.name == "posix",  # its own process group: killed as a whole
    )
    try:
        out, err = await proc.communicate(input.encode() if input is not None else None)
    except BaseException:
        _kill_group(proc)
        # Reap it; a second cancellation here must not leave a zombie behind either.
        await asyncio.shield(proc.wait())
        raise
    assert proc.returncode is not None
    return ProcessResult(proc.returncode, out.decode(errors="replace"),
                         err.decode(errors="replace"))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows: no process groups here, kill the program
            proc.kill()
