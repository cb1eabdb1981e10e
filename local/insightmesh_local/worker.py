"""One Lambda execution environment: a separate interpreter running one function's handler.

Started by ``functions.WorkerPool`` as ``python -m insightmesh_local.worker CODE_DIR HANDLER FD``
with the function's own environment. It imports the handler on the first invocation (the cold
start, timed as ``init_ms``), then serves invocations one at a time: a JSON line on stdin
(``{"event", "request_id", "timeout"}``); on file descriptor FD it answers
``{"phase": "invoke"}`` once initialised, then a JSON line with the result. The
handler's own prints and logs go to stdout/stderr as they would to CloudWatch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO


class LocalLambdaContext:
    """The attributes and method of Lambda's Python context object."""

    def __init__(self, request_id: str, deadline: float) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(type(error), error, error.__traceback__)[-12:],
    }


def _load(code_dir: str, handler: str) -> Any:
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise ValueError(f"Handler {handler!r} is not MODULE.FUNCTION")
    sys.path.insert(0, code_dir)
    file = Path(code_dir, *module_path.split(".")).with_suffix(".py")
    if not file.is_file():
        raise ImportError(f"Unable to import module '{module_path}': no file {file}")
    spec = importlib.util.spec_from_file_location(module_path, file)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[module_path] = module
    spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_path}'")
    return function


def serve(code_dir: str, handler_name: str, reply: TextIO) -> None:
    handler = None
    init_error: dict[str, Any] | None = None
    for line in sys.stdin:
        request = json.loads(line)
        init_ms = None
        if handler is None and init_error is None:
            started = time.perf_counter()
            try:
                handler = _load(code_dir, handler_name)
            except Exception as error:  # noqa: BLE001 - reported to the runtime as Lambda does
                init_error = _error(error, "Runtime.ImportModuleError")
            init_ms = round((time.perf_counter() - started) * 1000, 1)
        if init_error is not None:
            response: dict[str, Any] = {"ok": False, "error": init_error, "init_ms": init_ms}
        else:
            # The timeout runs from here: Lambda does not count the init phase against it.
            reply.write(json.dumps({"phase": "invoke", "init_ms": init_ms}) + "\n")
            reply.flush()
            context = LocalLambdaContext(request["request_id"], time.time() + float(request["timeout"]))
            try:
                result = handler(request["event"], context)  # type: ignore[misc]
                response = {"ok": True, "result": result, "init_ms": init_ms}
            except Exception as error:  # noqa: BLE001 - the function's error is its invocation's result
                response = {"ok": False, "error": _error(error), "init_ms": init_ms}
        try:
            payload = json.dumps(response, default=str)
        except (TypeError, ValueError) as error:
            payload = json.dumps({"ok": False, "error": _error(error, "Runtime.MarshalError"), "init_ms": init_ms})
        reply.write(payload + "\n")
        reply.flush()


def main() -> None:
    code_dir, handler_name, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with os.fdopen(fd, "w") as reply:
        try:
            serve(code_dir, handler_name, reply)
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
