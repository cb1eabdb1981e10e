"""slack_ingress: POST /slack/events, /slack/commands, /slack/interactions — verify, enqueue, ack."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.api import create_app
from insightmesh.conversation import intake
from insightmesh.tracing import ACK_FLUSH_SECONDS, flushed

app = create_app("slack_ingress", title="InsightMesh Slack ingress", payload_too_large_status=400)


@app.post("/slack/events", summary="Slack Events API")
def events() -> Response[Any]:
    return intake.handle_events(app)


@app.post("/slack/commands", summary="The /insightmesh slash command")
def commands() -> Response[Any]:
    return intake.handle_command(app)


@app.post("/slack/interactions", summary="Block actions: exit agent mode, feedback")
def interactions() -> Response[Any]:
    return intake.handle_interaction(app)


@flushed(timeout_seconds=ACK_FLUSH_SECONDS)  # on Slack's 3-second ack: a short bound
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
