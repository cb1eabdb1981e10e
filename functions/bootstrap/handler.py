"""bootstrap: the SeedBuiltins custom resource — built-in agents and system groups, idempotently."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.agents.catalog import seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.cfn import handle_custom_resource
from insightmesh.directory.users import ensure_system_groups
from insightmesh.observability import get_logger
from insightmesh.tracing import flushed

logger = get_logger("bootstrap")


def seed(_properties: dict[str, Any]) -> dict[str, Any]:
    report = seed_agents(builtin_definitions())
    groups = ensure_system_groups()
    logger.info("seeded", extra={"agents_created": report.created, "agents_migrated": report.migrated,
                                 "groups_created": groups})
    return {"AgentsCreated": ",".join(report.created) or "-", "GroupsCreated": ",".join(groups) or "-"}


@flushed
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    # Create and Update seed (never overwriting admin edits); Delete keeps the data.
    handle_custom_resource(event, context, on_create=seed, on_update=seed)
