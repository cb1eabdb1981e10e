"""Functions the isolation tests run in the child process (importable there by name)."""

from __future__ import annotations

import os
import time
from typing import Any


def echo(content: bytes, **arguments: Any) -> dict[str, Any]:
    return {"length": len(content), "arguments": arguments}


def hang(content: bytes, **_arguments: Any) -> None:
    time.sleep(600)


def allocate(content: bytes, **_arguments: Any) -> int:
    hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GB, past any test limit
    return len(hoard)


def crash(content: bytes, **_arguments: Any) -> None:
    os.abort()


def fail(content: bytes, **_arguments: Any) -> None:
    raise ValueError("bad input")


def chatty(content: bytes, **_arguments: Any) -> str:
    print("a parser that prints to stdout", flush=True)  # must not corrupt the reply
    return "quiet result"
