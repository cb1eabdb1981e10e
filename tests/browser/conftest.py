"""Browser tests need Debian's Chromium (Playwright's own browser download is never used).

The fixtures every console test module shares: one ``insightmesh dev`` per package run (an admin
bootstrapped, a member with an API token), one Chromium, and :class:`Tab`, a browser context that
fails the test on a console error or a console response without a CSP.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dev_server import CLI, ROOT, DevServer, _env
from tests.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
SKIP_REASON = "Chromium not found at /usr/bin/chromium: the browser tests are skipped (apt-get install chromium)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "tests/browser" in item.nodeid:
            item.add_marker(skip)


SHOTS = Path(__file__).parent / "screenshots"
ADMIN, MEMBER = "admin@example.com", "member@example.com"
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


def cli(server: DevServer, *args: str) -> str:
    result = subprocess.run([*CLI, *args, "--port", str(server.port)], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="package")
def server() -> Iterator[DevServer]:
    # Every test signs in from 127.0.0.1, and one sign-in is two hits on the login limiter (the
    # link page and its POST): a worker that runs the package within a minute passes the default
    # 20 per minute and gets a 429 page instead of the button. The limiter's own behaviour is
    # tested in tests/integration/test_oidc_flow.py; here it is raised out of the way.
    dev = DevServer(env={"LOGIN_RATE_LIMIT_PER_MINUTE": "1000"})
    try:
        # Bounded, but generous: on a loaded 2-core machine the whole stack takes a while to start.
        wait_for(lambda: "InsightMesh dev ready" in dev.output() or dev.process.poll() is not None, timeout=300,
                 interval=0.5, what="dev ready")
        assert dev.process.poll() is None, dev.output()
        cli(dev, "admin", "bootstrap", "--email", ADMIN)
        cli(dev, "token", "create", "--email", MEMBER, "--name", "member laptop")
        yield dev
    finally:
        dev.process.send_signal(signal.SIGTERM)
        dev.process.wait(timeout=60)
        dev.log.close()
        if dev.data_dir is not None:
            shutil.rmtree(dev.data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A browser context and page that records console errors and console responses without a CSP."""

    def __init__(self, chromium: Any, server: DevServer, *, viewport: dict[str, int] = WIDE) -> None:
        self.server = server
        self.context = chromium.new_context(viewport=viewport, timezone_id="America/New_York")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.without_csp: list[str] = []
        self.bytes = 0
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", self._response)

    def _response(self, response: Any) -> None:
        if "/console" in response.url and "content-security-policy" not in response.headers:
            self.without_csp.append(response.url)
        if response.status == 200:
            self.bytes += int(response.headers.get("content-length") or 0)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def goto(self, path: str) -> Any:
        return self.page.goto(self.url(path))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def sign_in(self, email: str) -> None:
        link = cli(self.server, "login-link", "--email", email)
        self.page.goto(link)
        self.page.get_by_role("button", name=f"Sign in as {email}").click()
        self.page.wait_for_url(self.url("/console"))

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors
        assert self.without_csp == [], self.without_csp


@pytest.fixture
def tab(chromium: Any, server: DevServer) -> Iterator[Tab]:
    opened = Tab(chromium, server)
    yield opened
    opened.close()
