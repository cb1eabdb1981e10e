"""Who may drive the local runtime: loopback Host, no foreign Origin, and the per-run secret.

``insightmesh dev``'s control surface (``/_local/*``: invoke any function, fire schedules, sweep
TTL) and the Slack sandbox's control endpoints (``/_sandbox/*``) must not answer a web page (a
plain ``text/plain`` POST needs no CORS preflight), a DNS-rebinding page (a foreign ``Host`` that
resolves to 127.0.0.1) or a tunnel (the README suggests one to connect a real workspace). So:

* **Host**: 127.0.0.1, localhost or [::1], any port; anything else is refused (403). Every local
  server applies this to every request, except the gateway's public routes (the API's routes,
  which API Gateway would serve: a tunnel must reach those).
* **Origin**: absent (curl, the CLI, tests), or the server's own origin; any other is refused (403).
* **Secret**: the ``X-InsightMesh-Local-Token`` header carries the run's secret (401 without it).
  ``insightmesh dev`` makes one per run (or takes ``$INSIGHTMESH_LOCAL_TOKEN``) and writes it to
  ``<data dir>/local-token`` with mode 0600; every CLI client reads it from there
  (``--data-dir``, default ``.insightmesh``), or from ``$INSIGHTMESH_LOCAL_TOKEN``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEADER = "X-InsightMesh-Local-Token"
ENVIRONMENT_VARIABLE = "INSIGHTMESH_LOCAL_TOKEN"
TOKEN_FILE = "local-token"  # noqa: S105 - a file name, not a secret
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_DATA_DIR = Path(".insightmesh")  # `insightmesh dev --data-dir`'s default
STARTING_WAIT_SECONDS = 15.0  # how long a CLI client waits for a runtime that answers "starting"


def new_secret(environ: Mapping[str, str] | None = None) -> str:
    """``$INSIGHTMESH_LOCAL_TOKEN`` when set (scripts that start the runtime themselves), else a new one."""
    given = (environ if environ is not None else os.environ).get(ENVIRONMENT_VARIABLE, "").strip()
    return given or secrets.token_urlsafe(32)


def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / TOKEN_FILE


def write_secret(data_dir: Path, secret: str) -> Path:
    """Write the secret readable by this user only (0600, also when the file already existed)."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, secret.encode("ascii"))
    finally:
        os.close(descriptor)
    return path


def remove_secret(data_dir: Path, secret: str) -> None:
    """Remove the file at the end of a run, unless another run has written its own since."""
    path = token_path(data_dir)
    try:
        if path.read_text().strip() == secret:
            path.unlink()
    except OSError:
        pass  # already gone, or never written: nothing to clean


def read_secret(data_dir: Path | str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """What a CLI client presents: ``$INSIGHTMESH_LOCAL_TOKEN``, else ``<data dir>/local-token``."""
    given = (environ if environ is not None else os.environ).get(ENVIRONMENT_VARIABLE, "").strip()
    if given:
        return given
    try:
        return token_path(Path(data_dir or DEFAULT_DATA_DIR)).read_text().strip() or None
    except OSError:
        return None


def _hostname(authority: str) -> str | None:
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:
        return None


def is_loopback_host(host: str | None) -> bool:
    """A ``Host`` header naming this machine's loopback: 127.0.0.1, localhost or [::1], any port."""
    if not host:
        return False
    name = _hostname(host.strip())
    return name is not None and name.lower() in LOOPBACK_HOSTS


def is_foreign_origin(origin: str | None, host: str | None) -> bool:
    """An ``Origin`` other than the server's own (``null`` included); no Origin is not foreign."""
    if origin is None:
        return False
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return True
    return parts.netloc.lower() != (host or "").strip().lower()


def refusal(host: str | None, origin: str | None, presented: str | None, secret: str | None) -> tuple[int, str] | None:
    """Why a request is refused (status, message), or None when it may proceed. ``secret`` None:
    only the Host and Origin are checked (a server's endpoints that need no secret)."""
    if not is_loopback_host(host):
        return 403, "this endpoint answers only on 127.0.0.1, localhost or [::1]"
    if is_foreign_origin(origin, host):
        return 403, "cross-origin requests are refused"
    if secret is not None:
        if not presented or not hmac.compare_digest(presented.encode(), secret.encode()):
            return 401, (f"missing or wrong {HEADER}: the secret is in the dev server's data dir "
                         f"({TOKEN_FILE}) or ${ENVIRONMENT_VARIABLE}")
    return None


# -- the CLI side --------------------------------------------------------------------------------------
def add_data_dir_option(command: argparse.ArgumentParser) -> None:
    """``--data-dir``: where a CLI client finds the running ``insightmesh dev``'s secret."""
    command.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                         help=f"the data dir `insightmesh dev` runs with: its control secret is DATA_DIR/"
                              f"{TOKEN_FILE} (default: {DEFAULT_DATA_DIR}; ${ENVIRONMENT_VARIABLE} overrides it)")


class ControlError(RuntimeError):
    """The control surface could not be used; the message says why, for the person at the terminal."""


@dataclass(frozen=True)
class ControlClient:
    """``/_local/*`` of the ``insightmesh dev`` on 127.0.0.1:``port``, with the run's secret. A runtime
    that is still starting (503) is waited for up to ``wait`` seconds."""

    port: int
    data_dir: Path | str | None = None
    wait: float = STARTING_WAIT_SECONDS

    def request(self, path: str, *, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
        url = f"http://127.0.0.1:{self.port}/_local/{path.lstrip('/')}"
        headers = {"Content-Type": "application/json"}
        secret = read_secret(self.data_dir)
        if secret:
            headers[HEADER] = secret
        data = None if body is None and method == "GET" else json.dumps(body or {}).encode()
        deadline = time.monotonic() + self.wait
        while True:
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")
                if error.code == 503 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise ControlError(self._explain(error.code, detail)) from error
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise ControlError(f"no insightmesh dev server on 127.0.0.1:{self.port} ({reason}); "
                                   "start `insightmesh dev` or pass --port") from error

    def _explain(self, status: int, detail: str) -> str:
        if status == 503:
            return (f"the insightmesh dev server on 127.0.0.1:{self.port} is still starting after "
                    f"{self.wait:.0f}s; try again when it says it is ready")
        if status == 401:
            where = token_path(Path(self.data_dir or DEFAULT_DATA_DIR))
            return (f"the insightmesh dev server on 127.0.0.1:{self.port} refused the request: no valid secret "
                    f"(looked in ${ENVIRONMENT_VARIABLE} and {where}; run from the folder you started "
                    "`insightmesh dev` in, or pass its --data-dir)")
        try:  # the control surface answers {"message": ...}, which says what is wrong
            message = json.loads(detail).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str) and message:
            return message
        return f"the insightmesh dev server on 127.0.0.1:{self.port} answered {status}: {detail}"


__all__ = ["DEFAULT_DATA_DIR", "ENVIRONMENT_VARIABLE", "HEADER", "TOKEN_FILE", "ControlClient", "ControlError",
           "add_data_dir_option", "is_foreign_origin", "is_loopback_host", "new_secret", "read_secret", "refusal",
           "remove_secret", "token_path", "write_secret"]
