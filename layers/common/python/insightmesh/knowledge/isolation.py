"""Run one untrusted-input function in a child process, under a wall-clock and a memory limit.

:func:`run_isolated` starts ``python -m insightmesh.knowledge.isolation`` with pipes: on its
stdin a JSON header line (the target ``"module:function"``, its keyword arguments, the memory
limit) and then the raw input bytes; on its stdout one JSON line with the target's result or
the exception it raised (type name, message and ``reason`` attribute). The child sets
``RLIMIT_AS`` on itself before reading anything, so a parser that tries to allocate past the limit
gets ``MemoryError`` (reported as :class:`IsolationOutOfMemory`); a child still running at the
deadline is killed (:class:`IsolationTimeout`); any other death is :class:`IsolationCrashed`.

Why a fresh interpreter through :mod:`subprocess`, not :mod:`multiprocessing`:

* AWS Lambda has no ``/dev/shm``, so ``multiprocessing.Queue``, ``Pool`` and their semaphores fail
  there; plain pipes work everywhere.
* A daemonic ``multiprocessing`` process may not start children ("daemonic processes are not
  allowed to have children"). ``insightmesh dev`` runs each function in its own interpreter
  started with ``subprocess.Popen`` (``insightmesh_local/functions.py``), and Lambda runs the
  handler in its runtime's main process; a ``subprocess`` child works under both, and under any
  future host that *is* daemonic.
* ``fork`` of a process with threads (boto3, the SQS batch, OpenTelemetry) can copy a held lock
  into the child, and ``preexec_fn`` is unsafe with threads for the same reason; a fresh
  interpreter setting its own limit has neither problem.
* The child gets a minimal environment (``PATH``, ``LANG`` and the parent's ``sys.path`` as
  ``PYTHONPATH``): no AWS credentials, tokens or secrets reach the code that parses the file.

The price is an interpreter start and the parser's import per call (``benchmarks/extraction.py``
measures it).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
from typing import Any, Final

MEMORY_EXIT_CODE: Final = 75
_STDERR_TAIL: Final = 2_000


class IsolationError(Exception):
    """The isolated call did not return a result."""


class IsolationTimeout(IsolationError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the child process ran past {seconds:g} s and was killed")
        self.seconds = seconds


class IsolationOutOfMemory(IsolationError):
    def __init__(self, memory_bytes: int) -> None:
        super().__init__(f"the child process needed more than {memory_bytes} bytes of address space")
        self.memory_bytes = memory_bytes


class IsolationCrashed(IsolationError):
    """The child died without a result (a signal, an abort in C code, a broken reply)."""


class IsolatedFailure(IsolationError):
    """The target raised an exception: its type name, message and ``reason`` (when it had one)."""

    def __init__(self, type_name: str, message: str, reason: str | None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.reason = reason


def child_environment() -> dict[str, str]:
    """What the child inherits: enough to find Python's modules, nothing secret."""
    environment = {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path),
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
                   # openpyxl imports numpy: one BLAS thread, not one stack per core in the address space
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("PATH", "LANG", "LC_ALL", "TZ"):
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def run_isolated(target: str, content: bytes, arguments: dict[str, Any], *, timeout: float,
                 memory_bytes: int) -> Any:
    """``module.function(content, **arguments)`` in a child process; its JSON-able result."""
    header = json.dumps({"target": target, "arguments": arguments, "memory_bytes": memory_bytes})
    try:
        completed = subprocess.run(  # our own interpreter and module, no shell
            [sys.executable, "-m", "insightmesh.knowledge.isolation"],
            input=header.encode() + b"\n" + content,
            capture_output=True,
            timeout=timeout,
            env=child_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as expired:  # subprocess.run has killed and reaped the child
        raise IsolationTimeout(timeout) from expired
    if completed.returncode == MEMORY_EXIT_CODE:
        raise IsolationOutOfMemory(memory_bytes)
    stderr = completed.stderr[-_STDERR_TAIL:].decode("utf-8", "replace")
    try:
        reply = json.loads(completed.stdout)
    except ValueError as error:
        raise IsolationCrashed(f"the child process exited with status {completed.returncode} without a "
                               f"result: {stderr}") from error
    if not isinstance(reply, dict):
        raise IsolationCrashed(f"the child process answered {type(reply).__name__}, not an object")
    if "error" in reply:
        failure = reply["error"]
        raise IsolatedFailure(str(failure.get("type")), str(failure.get("message")), failure.get("reason"))
    return reply.get("result")


def _limit_memory(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))


def _child_main() -> int:
    """The child: limit itself, read the request, call the target, answer one JSON line."""
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    _limit_memory(int(header["memory_bytes"]))
    try:
        content = stdin.read()
        module_name, _, function_name = str(header["target"]).partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        reply: dict[str, Any] = {"result": function(content, **header["arguments"])}
        del content
    except MemoryError:
        return MEMORY_EXIT_CODE  # nothing more can be trusted to allocate: the exit status says it
    except Exception as error:  # noqa: BLE001 - not swallowed: reported to the parent, which raises it
        reason = getattr(error, "reason", None)
        reply = {"error": {"type": type(error).__name__, "message": str(error),
                           "reason": reason if isinstance(reason, str) else None}}
    try:
        sys.stdout.buffer.write(json.dumps(reply).encode())
        sys.stdout.buffer.flush()
    except MemoryError:
        return MEMORY_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
