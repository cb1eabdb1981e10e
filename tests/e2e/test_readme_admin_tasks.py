"""The README's "Common admin tasks", run as written against `insightmesh dev`.

The shell blocks of that section are joined into one bash script and run from an empty folder,
with the project's `insightmesh` on PATH, as a new admin would paste them. Only two things are
adapted to the test's server: its port replaces 3000 in URLs, and `insightmesh` commands get
`--port` (a reader's `make dev` is on 3000, the default). The script stops at the first failing
command (``set -eo pipefail``), so every step must work, and its output is checked for what each
task promises.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.dev_server import ROOT, DevServer, _env, running

SECTION = "## Common admin tasks"


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.DOTALL)


@pytest.fixture(scope="module")
def dev(dev_logs: Path) -> Iterator[DevServer]:
    with running(log_dir=dev_logs) as server:
        yield server


def test_the_section_has_the_tasks_it_promises() -> None:
    script = "\n".join(readme_blocks())
    for step in ("admin bootstrap", "insightmesh chat --email", '"visibility\\": \\"restricted\\"',
                 "--acl group:sales", "slack_user_sync", "max_deactivate_percent"):
        assert step in script, step


def test_every_common_admin_task_works_as_written(dev: DevServer, tmp_path: Path) -> None:
    blocks = readme_blocks()
    marked = [f'{block}\necho "::block {number} done"' for number, block in enumerate(blocks, 1)]
    script = "\n".join([
        "set -eo pipefail",
        f'insightmesh() {{ command insightmesh "$@" --port {dev.port}; }}',
        *marked,
        # Afterwards, for the test only: the state the tasks promise, as JSON lines.
        'echo "::grants $(api "$API/agents/meddic/grants" | tr -d "\\n")"',
        'echo "::documents $(api "$API/knowledge/documents?acl=group:sales" | tr -d "\\n")"',
        'echo "::run $(api "$API/task-runs/$RUN_ID" | tr -d "\\n")"',
        'echo "::sam $(api "$API/users?email=sam@example.com" | tr -d "\\n")"',
    ]).replace("127.0.0.1:3000", f"127.0.0.1:{dev.port}")
    env = _env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"
    for number in range(1, len(blocks) + 1):
        assert f"::block {number} done" in output

    found = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
             for line in output.splitlines() if line.startswith("::") and not line.startswith("::block")}
    grants = found["::grants"]["items"]
    assert [(g["principal_type"], g["principal_id"], g["effect"]) for g in grants] == [("group", "sales", "allow")]
    documents = found["::documents"]["items"]
    assert [d["title"] for d in documents] == ["pricing.md"] and documents[0]["status"] == "indexed"
    assert "group:sales" in documents[0]["acl"]
    run = found["::run"]
    assert run["status"] == "succeeded", run
    sam = found["::sam"]["items"]
    assert len(sam) == 1 and sam[0]["is_active"]
