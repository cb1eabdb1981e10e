"""`insightmesh ingest`: walking, batching, the sweep plan, the events it sends and its summary —
against a small loopback stand-in of the dev server's control endpoint (no dev server, no store)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from insightmesh_local import ingest_cli
from insightmesh_local.cli import main
from insightmesh_local.ingest_cli import AwsTarget, Candidate, InvokeError, batches, collect, plan, run
from tests.helpers import free_port
from tests.standins.http import JsonHandler


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "handbook"
    (root / "policies").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "policies" / "refunds.md").write_text("# Refunds\n\n45 days.\n")
    (root / "travel.txt").write_text("per diem 95 euros\n")
    (root / "diagram.png").write_bytes(b"\x89PNG")
    (root / ".draft.md").write_text("hidden")
    (root / ".git" / "notes.md").write_text("hidden too")
    with (root / "huge.csv").open("wb") as huge:  # sparse: 5 MB + 1 byte without writing them
        huge.truncate(5 * 1024 * 1024 + 1)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "linked.md").write_text("# Linked\n")
    (root / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    return root


def sha(path: Path) -> str:
    return "local:" + hashlib.sha256(str(path).encode()).hexdigest()


def test_a_folder_is_walked_skipping_hidden_unsupported_and_linked_folders(tree):
    root = collect(tree)
    assert root.path == tree and root.source == f"local:{tree}"
    assert [candidate.path for candidate in root.files] == [tree / "travel.txt", tree / "policies" / "refunds.md"]
    assert [candidate.mime_type for candidate in root.files] == ["text/plain", "text/markdown"]
    assert root.files[0].document_id == sha(tree / "travel.txt")
    assert dict(root.skipped) == {tree / ".git": "hidden folder", tree / "link": "a link to a folder (not followed)",
                                  tree / ".draft.md": "hidden file", tree / "diagram.png": "unsupported file type"}
    assert list(root.failed) == [tree / "huge.csv"] and "larger than 5 MB" in root.failed[tree / "huge.csv"]


def test_a_named_file_is_taken_as_given_and_a_bad_one_fails(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tree)
    hidden = collect(".draft.md")  # named explicitly: not skipped for being hidden
    assert [c.path for c in hidden.files] == [tree / ".draft.md"] and hidden.source == f"local:{tree / '.draft.md'}"
    assert collect("diagram.png").failed == {tree / "diagram.png": "unsupported file type"}
    assert collect(tmp_path / "nowhere").failed == {tmp_path / "nowhere": "no such file or folder"}


def candidate(name: str, size: int) -> Candidate:
    return Candidate(Path("/docs") / name, size, 0.0, "text/plain")


def test_batches_hold_at_most_the_budget_of_base64_and_a_large_file_goes_alone():
    files = [candidate("a", 300), candidate("b", 300), candidate("c", 3000), candidate("d", 30)]
    groups = [[c.path.name for c in group] for group in batches(files, budget=1000)]
    assert groups == [["a", "b"], ["c"], ["d"]]  # 400 + 400 base64 bytes, then 4000 alone
    assert list(batches([])) == []


def test_a_swept_folder_rides_on_its_last_invocation_with_every_file_id(tree):
    root = collect(tree)
    root.files.extend([candidate("x", 3000), candidate("y", 300)])
    invocations, refused = plan([root], sweep=True, budget=1000)
    assert not refused
    assert [inv.sweep for inv in invocations] == [False, False, True]
    last = invocations[-1]
    # every file found, the one too large to send included: its previous version stays
    assert set(last.keep) == {c.document_id for c in root.files} | {sha(tree / "huge.csv")}
    assert [inv.keep for inv in invocations[:-1]] == [None, None]


def test_a_keep_list_that_does_not_fit_goes_alone_and_an_empty_folder_is_swept(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    invocations, _ = plan([collect(empty)], sweep=True)
    assert [(inv.files, inv.sweep, inv.keep) for inv in invocations] == [([], True, [])]
    root = collect(empty)
    root.files.append(candidate("a", 740))  # 988 bytes of base64: no room left for the keep list
    invocations, _ = plan([root], sweep=True, budget=1000)
    assert [(len(inv.files), inv.sweep) for inv in invocations] == [(1, False), (0, True)]


def test_a_folder_that_could_not_be_listed_is_not_swept(tree):
    root = collect(tree)
    root.unlisted.append(tree / "secret")
    invocations, refused = plan([root], sweep=True)
    assert not any(inv.sweep for inv in invocations) and "could not be listed" in refused[str(tree)]
    missing = collect(tree / "nowhere")
    assert plan([missing], sweep=True) == ([], {})  # never sweep a PATH that is not there


class Recorder:
    description = "recorder"

    def __init__(self, *answers) -> None:
        self.events: list[dict] = []
        self.answers = list(answers)

    def invoke(self, event):
        self.events.append(event)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        ids = [item["document_id"] for item in event["documents"]]
        return answer or {"seen": len(ids), "new": len(ids), "changed": 0, "unchanged": 0, "failed": 0,
                          "removed": 0, "chunks_written": len(ids), "errors": {}}


def test_the_events_carry_the_files_as_the_function_expects(tree):
    target = Recorder()
    err = io.StringIO()
    summary = run([str(tree)], target, acl=["anyone", "domain:example.com"], sweep=False, err=err)
    [event] = target.events
    assert event["source"] == f"local:{tree}" and event["sweep"] is False and "keep_document_ids" not in event
    travel = event["documents"][0]
    mtime = datetime.fromtimestamp((tree / "travel.txt").stat().st_mtime, UTC)
    assert travel == {"document_id": sha(tree / "travel.txt"), "title": "travel.txt", "filename": "travel.txt",
                      "content_base64": base64.b64encode(b"per diem 95 euros\n").decode(), "mime_type": "text/plain",
                      "url": (tree / "travel.txt").as_uri(), "modified_time": mtime.isoformat(),
                      "acl": ["anyone", "domain:example.com"]}
    assert summary.counts["new"] == 2 and summary.counts["failed"] == 1 and summary.skipped == 4
    assert "larger than 5 MB" in summary.errors[str(tree / "huge.csv")]
    assert f"skipped {tree / 'diagram.png'}: unsupported file type" in err.getvalue()
    assert "batch 1/1: new: 2, changed: 0, unchanged: 0, failed: 0, removed: 0" in err.getvalue()


def test_errors_are_reported_per_file_and_a_failed_batch_fails_its_files(tree):
    (tree / "huge.csv").unlink()
    answer = {"seen": 2, "new": 1, "changed": 0, "unchanged": 0, "failed": 1, "removed": 0, "chunks_written": 1,
              "errors": {sha(tree / "travel.txt"): "ExtractionError: no text"}}
    summary = run([str(tree)], Recorder(answer), acl=["anyone"], sweep=False, err=io.StringIO())
    assert summary.errors == {str(tree / "travel.txt"): "ExtractionError: no text"} and not summary.ok
    summary = run([str(tree)], Recorder(InvokeError("Sandbox.Timedout: too slow")), acl=["anyone"], sweep=True,
                  err=io.StringIO())
    assert summary.counts["failed"] == 2
    assert summary.errors[str(tree / "travel.txt")] == "not ingested: Sandbox.Timedout: too slow"
    assert summary.errors[str(tree)] == "not swept: Sandbox.Timedout: too slow"


# -- the command, against a stand-in of the dev server's control endpoint -------------------------------

class ControlStandIn:
    """GET /_local/functions and POST /_local/functions/<id>/invoke, answering as the runtime does."""

    def __init__(self, *, functions=("KnowledgeIngestFunction",), result=None, error=None) -> None:
        self.events: list[dict] = []
        stand_in = self

        class Handler(JsonHandler):
            def do_GET(self):
                self._send(200, {"functions": [{"logical_id": name, "timeout": 300} for name in functions]})

            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.events.append({"path": self.path, "event": event,
                                        "secret": self.headers.get("X-InsightMesh-Local-Token")})
                count = len(event["documents"])
                default = {"seen": count, "new": count, "changed": 0, "unchanged": 0, "failed": 0,
                           "removed": 1 if event["sweep"] else 0, "chunks_written": count, "errors": {}}
                self._send(200, {"ok": error is None, "result": None if error else (result or default),
                                 "error": error})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def control():
    stand_ins: list[ControlStandIn] = []

    def start(**kwargs) -> ControlStandIn:
        stand_ins.append(ControlStandIn(**kwargs))
        return stand_ins[-1]

    yield start
    for stand_in in stand_ins:
        stand_in.close()


def test_ingest_invokes_the_function_and_prints_the_summary(tree, control, capsys):
    (tree / "huge.csv").unlink()
    dev = control()
    assert main(["ingest", str(tree), "--sweep", "--acl", "Anyone", "--port", str(dev.port), "--json"]) == 0
    [call] = dev.events
    assert call["path"] == "/_local/functions/KnowledgeIngestFunction/invoke"
    assert call["event"]["sweep"] is True and len(call["event"]["keep_document_ids"]) == 2
    assert call["event"]["documents"][0]["acl"] == ["anyone"]
    out, err = capsys.readouterr()
    assert "summary: new: 2, changed: 0, unchanged: 0, failed: 0, removed: 1" in err
    assert json.loads(out)["new"] == 2


def test_ingest_exits_1_when_something_failed(tree, control, capsys):
    dev = control(error={"errorType": "ValueError", "errorMessage": "not a knowledge_ingest event: ..."})
    assert main(["ingest", str(tree / "travel.txt"), "--port", str(dev.port)]) == 1
    err = capsys.readouterr().err
    assert "failed: 1" in err and "not ingested: ValueError: not a knowledge_ingest event" in err


def test_ingest_without_a_dev_server_says_so(tree, capsys):
    assert main(["ingest", str(tree), "--port", str(free_port())]) == 1
    assert "no insightmesh dev server on 127.0.0.1" in capsys.readouterr().err


def test_ingest_against_a_dev_server_without_the_function_says_so(tree, control, capsys):
    dev = control(functions=("HealthFunction",))
    assert main(["ingest", str(tree), "--port", str(dev.port)]) == 1
    assert "has no KnowledgeIngestFunction" in capsys.readouterr().err


def test_a_bad_acl_is_a_usage_error(tree, capsys):
    assert main(["ingest", str(tree), "--acl", "everyone"]) == 2
    assert "not a principal" in capsys.readouterr().err


# -- --stack-name: CloudFormation and Lambda, stubbed (a real stack cannot be reached from here) ---------

class StubbedSession:
    region_name = "eu-west-1"

    def __init__(self) -> None:
        self.clients = {name: boto3.client(name, region_name=self.region_name) for name in ("cloudformation", "lambda")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}

    def client(self, name, config=None):
        return self.clients[name]


def test_a_deployed_stack_is_invoked_through_lambda():
    session = StubbedSession()
    session.stubs["cloudformation"].add_response(
        "describe_stack_resource",
        {"StackResourceDetail": {"LogicalResourceId": "KnowledgeIngestFunction", "PhysicalResourceId": "prod-ingest-1",
                                 "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "CREATE_COMPLETE",
                                 "LastUpdatedTimestamp": datetime(2026, 1, 1, tzinfo=UTC)}},
        {"StackName": "insightmesh-prod", "LogicalResourceId": "KnowledgeIngestFunction"})
    event = {"source": "local:/x", "documents": [], "sweep": False}
    result = {"seen": 0, "new": 0, "changed": 0, "unchanged": 0, "failed": 0, "removed": 0, "chunks_written": 0,
              "errors": {}}
    body = json.dumps(result).encode()
    session.stubs["lambda"].add_response(
        "invoke", {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))},
        {"FunctionName": "prod-ingest-1", "InvocationType": "RequestResponse", "Payload": json.dumps(event).encode()})
    failure = json.dumps({"errorType": "ValueError", "errorMessage": "bad"}).encode()
    session.stubs["lambda"].add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                   "Payload": StreamingBody(io.BytesIO(failure), len(failure))})
    for stub in session.stubs.values():
        stub.activate()
    target = AwsTarget("insightmesh-prod", None, session=session)
    assert target.function_name == "prod-ingest-1" and "insightmesh-prod" in target.description
    assert target.invoke(event) == result
    with pytest.raises(InvokeError, match="ValueError: bad"):
        target.invoke(event)
    with pytest.raises(InvokeError, match="over Lambda's 6 MB limit"):
        target.invoke({**event, "documents": [{"content_base64": "A" * ingest_cli.LAMBDA_PAYLOAD_LIMIT}]})


def test_an_unknown_stack_is_reported():
    session = StubbedSession()
    session.stubs["cloudformation"].add_client_error("describe_stack_resource", "ValidationError",
                                                     "Stack 'nope' does not exist")
    session.stubs["cloudformation"].activate()
    with pytest.raises(ingest_cli.TargetError, match="Stack 'nope' does not exist"):
        AwsTarget("nope", None, session=session)


def test_an_unreadable_folder_is_reported(tree, monkeypatch):
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):
        onerror(PermissionError(13, "Permission denied", str(tree / "locked")))
        yield from real_walk(top, onerror=onerror, **kwargs)

    monkeypatch.setattr(ingest_cli.os, "walk", walk)
    root = collect(tree)
    assert root.unlisted == [tree / "locked"] and root.failed[tree / "locked"] == "cannot list: Permission denied"


def test_ingest_presents_the_dev_servers_secret_from_its_data_dir(tree, control, tmp_path, monkeypatch):
    monkeypatch.delenv("INSIGHTMESH_LOCAL_TOKEN", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "local-token").write_text("the-runs-secret")
    dev = control()
    assert main(["ingest", str(tree / "travel.txt"), "--port", str(dev.port), "--data-dir",
                 str(tmp_path / "data")]) == 0
    assert [call["secret"] for call in dev.events] == ["the-runs-secret"]
