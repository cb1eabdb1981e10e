"""How `make test` shares the tests between its pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

from tests.conftest import pytest_xdist_make_scheduler


class Config:
    """What xdist's schedulers read of pytest's config: the options of ``-n 2 --dist ...``."""

    def __init__(self, dist: str) -> None:
        self.option = SimpleNamespace(dist=dist, tx=["2*popen"], numprocesses=2, loadscopereorder=True)

    def getoption(self, name: str) -> object:
        return getattr(self.option, name)

    getvalue = getoption


def test_each_test_file_is_a_unit_and_the_e2e_and_browser_modules_are_one():
    scheduler = pytest_xdist_make_scheduler(Config("loadfile"), None)
    units = {scheduler._split_scope(nodeid) for nodeid in (
        "tests/e2e/test_jobs.py::test_run_now", "tests/e2e/test_dev_server.py::test_liveness",
        "tests/e2e/test_fuzz_public_routes.py::test_oversized[/slack/events]",
        "tests/browser/test_console.py::test_sign_in_with_a_login_link")}
    assert units == {"tests/e2e"}
    assert scheduler._split_scope("tests/unit/test_config.py::test_a[x::y]") == "tests/unit/test_config.py"
    assert scheduler._split_scope("tests/integration/test_admin_api.py::Class::test_b") == \
        "tests/integration/test_admin_api.py"


def test_other_distribution_modes_keep_xdists_own_scheduler():
    assert pytest_xdist_make_scheduler(Config("load"), None) is None
