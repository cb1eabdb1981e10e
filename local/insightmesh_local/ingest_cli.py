"""`insightmesh ingest PATH...`: local files into the knowledge base, through the running system.

The command never opens the knowledge base itself (locally it is an embedded Qdrant store that the
dev server holds; in AWS a Qdrant server the laptop may not reach). It reads the files and invokes
the stack's ``KnowledgeIngestFunction`` with them (``insightmesh.knowledge.uploads``):

* locally: ``POST http://127.0.0.1:<port>/_local/functions/KnowledgeIngestFunction/invoke`` on the
  running ``insightmesh dev``;
* ``--stack-name NAME``: a Lambda ``Invoke`` of the deployed function, its physical name read from
  CloudFormation (your AWS credentials and region).

Files: each PATH is a file or a folder (walked recursively, without following folder links).
Hidden files and folders, and types the extractors do not read, are skipped, saying so; a file
named on the command line is taken even when hidden, and fails when its type is not supported.
A document's id is ``local:`` + the SHA-256 of its absolute path, its source ``local:`` + the
absolute PATH given (the scope ``--sweep`` cleans: documents of that source whose files are gone
are removed). Files larger than 5 MB fail. Batches carry at most ~4 MB of base64 (a synchronous
Lambda invocation takes 6 MB; a single file up to 5 MB goes alone, ~6.7 MB encoded, which only the
local runtime accepts). ``--sweep`` rides on each PATH's last invocation, with the ids of every
file found under it: the function removes the source's other documents then, however many batches
came before (and not at all when a folder under PATH could not be listed).

Output: a line per batch on stderr, then a summary (``new: N, changed: N, unchanged: N, failed: N,
removed: N``) and every error; ``--json`` also prints the summary as JSON on stdout. Exit code 0
when nothing failed, 1 otherwise (2 for bad options).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import json
import os
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from insightmesh_local import local_auth

FUNCTION = "KnowledgeIngestFunction"
BATCH_BASE64_BYTES = 4 * 1024 * 1024  # per invocation, whatever the number of documents
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # a synchronous Lambda invocation's request payload
EXIT_USAGE = 2
COUNTS = ("new", "changed", "unchanged", "failed", "removed")


class TargetError(RuntimeError):
    """The system cannot be reached (no dev server, no such stack): nothing can be ingested."""


class InvokeError(RuntimeError):
    """One invocation failed (the function raised, timed out, or the payload is too large)."""


# -- files ---------------------------------------------------------------------------------------

def document_id_for(path: Path) -> str:
    return "local:" + hashlib.sha256(str(path).encode()).hexdigest()


def encoded_size(size: int) -> int:
    return (size + 2) // 3 * 4


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute
    size: int
    mtime: float
    mime_type: str

    @property
    def document_id(self) -> str:
        return document_id_for(self.path)


@dataclass
class Root:
    """One PATH argument: its files, what was skipped and what failed before sending."""

    path: Path  # absolute
    files: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    unlisted: list[Path] = field(default_factory=list)  # folders os.walk could not read

    @property
    def source(self) -> str:
        return "local:" + str(self.path)


def _limits() -> tuple[int, Callable[[str], str | None]]:
    from insightmesh.file_types import mime_type_for
    from insightmesh.knowledge import extract
    from insightmesh.knowledge.uploads import MAX_DOCUMENT_BYTES

    def mime_type(name: str) -> str | None:
        found = mime_type_for(name)
        return found if found in extract.SUPPORTED_MIME_TYPES else None

    return MAX_DOCUMENT_BYTES, mime_type


def collect(argument: str | Path) -> Root:
    """The files under one PATH argument (sorted), with the reason for each one left out."""
    max_bytes, mime_type_of = _limits()
    root = Root(Path(os.path.abspath(argument)))

    def consider(path: Path, *, named: bool) -> None:
        mime_type = mime_type_of(path.name)
        try:
            stat = path.stat()
        except OSError as error:
            root.failed[path] = f"cannot read: {error.strerror or error}"
            return
        if mime_type is None:
            if named:
                root.failed[path] = "unsupported file type"
            else:
                root.skipped.append((path, "unsupported file type"))
        elif stat.st_size > max_bytes:
            root.failed[path] = f"larger than {max_bytes // (1024 * 1024)} MB ({stat.st_size} bytes)"
        else:
            root.files.append(Candidate(path, stat.st_size, stat.st_mtime, mime_type))

    if root.path.is_file():
        consider(root.path, named=True)
    elif root.path.is_dir():
        def unreadable(error: OSError) -> None:
            folder = Path(error.filename or root.path)
            root.unlisted.append(folder)
            root.failed[folder] = f"cannot list: {error.strerror or error}"

        for folder, dirnames, filenames in os.walk(root.path, onerror=unreadable):
            for name in sorted(dirnames):
                if name.startswith("."):
                    root.skipped.append((Path(folder) / name, "hidden folder"))
                elif (Path(folder) / name).is_symlink():
                    root.skipped.append((Path(folder) / name, "a link to a folder (not followed)"))
            dirnames[:] = sorted(name for name in dirnames
                                 if not name.startswith(".") and not (Path(folder) / name).is_symlink())
            for name in sorted(filenames):
                path = Path(folder) / name
                if name.startswith("."):
                    root.skipped.append((path, "hidden file"))
                elif not path.is_file():
                    root.skipped.append((path, "not a regular file (a broken link?)"))
                else:
                    consider(path, named=False)
    elif root.path.exists():
        root.failed[root.path] = "not a regular file or folder"
    else:
        root.failed[root.path] = "no such file or folder"
    return root


def batches(files: list[Candidate], budget: int = BATCH_BASE64_BYTES) -> Iterator[list[Candidate]]:
    """Consecutive groups of at most ``budget`` bytes of base64 (a larger file goes alone)."""
    batch: list[Candidate] = []
    used = 0
    for candidate in files:
        size = encoded_size(candidate.size)
        if batch and used + size > budget:
            yield batch
            batch, used = [], 0
        batch.append(candidate)
        used += size
    if batch:
        yield batch


def document(candidate: Candidate, acl: list[str]) -> dict[str, Any]:
    """The event's entry for one file (read now: OSError when it went away or cannot be read)."""
    content = candidate.path.read_bytes()
    return {
        "document_id": candidate.document_id,
        "title": candidate.path.name,
        "filename": candidate.path.name,
        "content_base64": base64.b64encode(content).decode("ascii"),
        "mime_type": candidate.mime_type,
        "url": candidate.path.as_uri(),
        "modified_time": datetime.fromtimestamp(candidate.mtime, UTC).isoformat(),
        "acl": list(acl),
    }


# -- targets -------------------------------------------------------------------------------------

class Target(Protocol):
    description: str

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]: ...


class LocalTarget:
    """The running `insightmesh dev`, through its control endpoint."""

    def __init__(self, port: int, data_dir: str | None = None) -> None:
        self.port = port
        self.control = local_auth.ControlClient(port, data_dir)
        self.description = f"insightmesh dev on 127.0.0.1:{port}"
        self.timeout = 330.0
        try:  # waits a few seconds for a runtime that is still starting
            functions = self.control.request("functions")["functions"]
        except (local_auth.ControlError, TypeError, KeyError) as error:
            raise TargetError(f"{error}; or use --stack-name for a deployed stack") from error
        spec = next((item for item in functions if item.get("logical_id") == FUNCTION), None)
        if spec is None:
            raise TargetError(f"the dev server on 127.0.0.1:{port} has no {FUNCTION}: its template predates "
                              "the knowledge base; restart `insightmesh dev`")
        self.timeout = float(spec.get("timeout") or 300) + 30

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.control.request(f"functions/{FUNCTION}/invoke", method="POST", body=event,
                                          timeout=self.timeout)
        except local_auth.ControlError as error:
            if isinstance(error.__cause__, urllib.error.HTTPError):
                raise InvokeError(str(error)) from error
            raise TargetError(f"lost the dev server on 127.0.0.1:{self.port} ({error})") from error
        if not answer.get("ok"):
            problem = answer.get("error") or {}
            raise InvokeError(f"{problem.get('errorType', 'error')}: {problem.get('errorMessage', problem)}")
        return dict(answer["result"])


class AwsTarget:
    """The deployed stack's function, invoked with the caller's AWS credentials."""

    def __init__(self, stack_name: str, region: str | None, *, session: Any = None) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)
        session = session or boto3.session.Session(region_name=region)
        try:
            detail = session.client("cloudformation").describe_stack_resource(
                StackName=stack_name, LogicalResourceId=FUNCTION)["StackResourceDetail"]
        except self._errors as error:
            raise TargetError(f"cannot find {FUNCTION} in stack {stack_name!r}: {error}") from error
        self.function_name = str(detail["PhysicalResourceId"])
        self.description = f"AWS stack {stack_name} ({self.function_name}, {session.region_name})"
        self.client = session.client("lambda", config=Config(read_timeout=900, connect_timeout=10,
                                                             retries={"total_max_attempts": 1}))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(event).encode()
        if len(payload) > LAMBDA_PAYLOAD_LIMIT:
            raise InvokeError(f"the invocation would carry {_size(len(payload))}, over Lambda's 6 MB limit")
        try:
            response = self.client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                          Payload=payload)
        except self._errors as error:
            raise InvokeError(f"Lambda invoke failed: {error}") from error
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            problem = answer if isinstance(answer, dict) else {}
            raise InvokeError(f"{problem.get('errorType', 'error')}: {problem.get('errorMessage', answer)}")
        return dict(answer)


# -- the run -------------------------------------------------------------------------------------

@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("seen", *COUNTS, "chunks_written"), 0))
    errors: dict[str, str] = field(default_factory=dict)  # a path (or the document id / source) -> why
    skipped: int = 0

    def add(self, result: dict[str, Any], names: dict[str, str]) -> None:
        for key in self.counts:
            self.counts[key] += int(result.get(key) or 0)
        for key, message in (result.get("errors") or {}).items():
            self.errors[names.get(key, key)] = str(message)

    def fail(self, name: str, message: str) -> None:
        self.counts["failed"] += 1
        self.errors[name] = message

    @property
    def ok(self) -> bool:
        return not self.counts["failed"] and not self.errors

    def line(self) -> str:
        return ", ".join(f"{key}: {self.counts[key]}" for key in COUNTS) + \
            f" (chunks written: {self.counts['chunks_written']})"


@dataclass(frozen=True)
class Invocation:
    root: Root
    files: list[Candidate]
    sweep: bool = False
    keep: list[str] | None = None  # with sweep: the ids of every file found under the root


def plan(roots: list[Root], *, sweep: bool,
         budget: int = BATCH_BASE64_BYTES) -> tuple[list[Invocation], dict[str, str]]:
    """The invocations to send, and the PATHs whose sweep was refused, with why.

    A swept PATH's last invocation carries ``"sweep": true`` and the ids of every file found under
    it (``keep_document_ids``, files that failed here included, so their previous versions stay):
    the function removes the source's other documents, whatever happened to the earlier batches."""
    invocations: list[Invocation] = []
    refused: dict[str, str] = {}
    for root in roots:
        if root.path in root.failed and not root.files:
            continue  # the PATH itself is unusable: nothing to send, nothing to sweep
        groups = list(batches(root.files, budget))
        if not sweep:
            invocations.extend(Invocation(root, group) for group in groups)
            continue
        if root.unlisted:
            refused[str(root.path)] = (f"not swept: {len(root.unlisted)} folder(s) could not be listed, and a "
                                       "sweep would remove the documents of their files")
            invocations.extend(Invocation(root, group) for group in groups)
            continue
        keep = sorted({candidate.document_id for candidate in root.files} | {document_id_for(path)
                                                                            for path in root.failed})
        last = groups.pop() if groups else []
        if sum(encoded_size(candidate.size) for candidate in last) + sum(len(item) + 4 for item in keep) > budget:
            groups.append(last)
            last = []
        invocations.extend(Invocation(root, group) for group in groups)
        invocations.append(Invocation(root, last, sweep=True, keep=keep))
    return invocations, refused


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / (1024 * 1024):.1f} MB"


def requested_by() -> str:
    """Who runs the upload, for the function's audit entry: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def run(paths: list[str], target: Target, *, acl: list[str], sweep: bool, err: Any = None) -> Summary:
    stream = err or sys.stderr

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    roots = [collect(path) for path in paths]
    summary = Summary()
    for root in roots:
        for path, reason in root.skipped:
            say(f"skipped {path}: {reason}")
        summary.skipped += len(root.skipped)
    invocations, refused = plan(roots, sweep=sweep)
    for root in roots:
        for path, reason in root.failed.items():
            summary.fail(str(path), reason)
    for path_text, reason in refused.items():
        say(f"{path_text}: {reason}")
        summary.errors[path_text] = reason
    for number, invocation in enumerate(invocations, start=1):
        names = {candidate.document_id: str(candidate.path) for candidate in invocation.files}
        names[invocation.root.source] = str(invocation.root.path)
        documents = []
        for candidate in invocation.files:
            try:
                documents.append(document(candidate, acl))
            except OSError as error:
                summary.fail(str(candidate.path), f"cannot read: {error.strerror or error}")
        size = sum(len(item["content_base64"]) for item in documents)
        what = f"{len(documents)} document(s), {_size(size)}" if documents or not invocation.sweep else "sweep only"
        say(f"batch {number}/{len(invocations)}: {what} from {invocation.root.path}"
            f"{' (then sweep)' if invocation.sweep and documents else ''} ...")
        started = time.monotonic()
        try:
            event: dict[str, Any] = {"source": invocation.root.source, "documents": documents,
                                     "sweep": invocation.sweep, "requested_by": requested_by()}
            if invocation.keep is not None:
                event["keep_document_ids"] = invocation.keep
            result = target.invoke(event)
        except InvokeError as error:
            for item in documents:
                summary.fail(names[item["document_id"]], f"not ingested: {error}")
            if invocation.sweep:
                summary.errors[str(invocation.root.path)] = f"not swept: {error}"
            say(f"batch {number}/{len(invocations)}: failed: {error}")
            continue
        summary.add(result, names)
        counts = ", ".join(f"{key}: {int(result.get(key) or 0)}" for key in COUNTS)
        say(f"batch {number}/{len(invocations)}: {counts} ({time.monotonic() - started:.1f}s)")
    return summary


def cmd_ingest(args: argparse.Namespace) -> int:
    from insightmesh.knowledge.uploads import normalise_acl

    try:
        acl = list(normalise_acl(args.acl or ["anyone"]))
    except ValueError as error:
        print(f"insightmesh ingest: --acl: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        target: Target = AwsTarget(args.stack_name, args.region) if args.stack_name else \
            LocalTarget(args.port, args.data_dir)
        print(f"ingesting into {target.description}", file=sys.stderr)
        summary = run(args.paths, target, acl=acl, sweep=args.sweep)
    except TargetError as error:
        print(f"insightmesh ingest: {error}", file=sys.stderr)
        return 1
    print(f"summary: {summary.line()}" + (f"; {summary.skipped} skipped" if summary.skipped else ""),
          file=sys.stderr)
    for name, message in summary.errors.items():
        print(f"  error: {name}: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({**summary.counts, "skipped": summary.skipped, "errors": summary.errors}, indent=2))
    return 0 if summary.ok else 1


def add_parser(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="ingest local files into the knowledge base of the running system",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (folders are walked)")
    ingest.add_argument("--port", type=int, default=3000, help="the local dev server's port (default 3000)")
    local_auth.add_data_dir_option(ingest)
    ingest.add_argument("--acl", action="append", metavar="PRINCIPAL",
                        help="who may read the documents, repeatable: anyone (the default), domain:example.com, "
                             "user:alice@example.com, group:sales (a directory group, by name: it must exist) or "
                             "group:sales@example.com (a Google group's e-mail)")
    ingest.add_argument("--sweep", action="store_true",
                        help="also remove documents of each PATH whose files are gone")
    ingest.add_argument("--stack-name", help="a deployed stack instead of the local system (uses your AWS "
                                             "credentials and region)")
    ingest.add_argument("--region", default=os.environ.get("AWS_REGION"))
    ingest.add_argument("--json", action="store_true", help="also print the summary as JSON on stdout")
    ingest.set_defaults(run=cmd_ingest)
