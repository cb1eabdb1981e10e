"""The agent registry against DynamoDB (moto) — insightmesh.agents.catalog."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from insightmesh.agents import catalog as catalog_module

if TYPE_CHECKING:
    from tests.integration.conftest import DynamoCalls

NOW = datetime(2025, 10, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def catalog(tables: dict[str, str]) -> ModuleType:
    return catalog_module


def builtins(catalog: ModuleType) -> list[Any]:
    definition = catalog.AgentDefinition
    return [
        definition("help", "Help", "Lists what I can do", aliases=("h", "?"), visibility="public"),
        definition("meddic", "MEDDIC coach", "Qualifies a deal with MEDDIC", aliases=("medic", "deal")),
        definition("profile", "Company profile", "Researches a company", aliases=("research",)),
        definition("admin", "Admin tools", "Operates the assistant", visibility="admins"),
    ]


# -- seeding ------------------------------------------------------------------------------------


def test_seeding_creates_every_builtin(catalog: ModuleType) -> None:
    report = catalog.seed_agents(builtins(catalog))

    assert report.created == ["help", "meddic", "profile", "admin"]
    assert report.unchanged == report.updated == []
    meddic = catalog.AgentRecord.get("meddic")
    assert meddic.kind == "agent"
    assert meddic.display_name == "MEDDIC coach"
    assert meddic.description == "Qualifies a deal with MEDDIC"
    assert meddic.aliases == ["medic", "deal"]
    assert (meddic.is_system, meddic.visibility, meddic.enabled) == (True, "restricted", True)
    assert (meddic.visibility_setting, meddic.is_public, meddic.requires_admin) == ("restricted", False, False)
    assert meddic.deleted_at is None
    assert meddic.created_at == meddic.updated_at
    assert meddic.version == 1
    assert catalog.AgentRecord.get("admin").visibility == "admins"
    assert catalog.AgentRecord.get("admin").requires_admin is True  # derived, for readers that predate visibility
    assert catalog.AgentRecord.get("help").visibility == "public"


def test_reseeding_changes_nothing(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog))
    before = boto3.client("dynamodb").scan(TableName=os.environ["AGENTS_TABLE"])["Items"]

    report = catalog.seed_agents(builtins(catalog))

    assert report.created == report.updated == []
    assert report.unchanged == ["help", "meddic", "profile", "admin"]
    assert boto3.client("dynamodb").scan(TableName=os.environ["AGENTS_TABLE"])["Items"] == before


def test_reseeding_after_an_admin_edit_keeps_the_edit(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog))
    meddic = catalog.AgentRecord.get("meddic")
    meddic.update(actions=[
        catalog.AgentRecord.display_name.set("Deal coach"),
        catalog.AgentRecord.description.set("Our MEDDPICC flavour"),
        catalog.AgentRecord.aliases.set(["coach"]),
        catalog.AgentRecord.enabled.set(False),
        *catalog.AgentRecord.visibility_actions("admins"),
    ])
    catalog.AgentRecord.get("profile").update(actions=[catalog.AgentRecord.deleted_at.set(NOW)])

    report = catalog.seed_agents(builtins(catalog))

    assert report.created == []
    assert report.unchanged == ["help", "meddic", "profile", "admin"]
    edited = catalog.AgentRecord.get("meddic")
    assert edited.display_name == "Deal coach"
    assert edited.description == "Our MEDDPICC flavour"
    assert edited.aliases == ["coach"]
    assert (edited.enabled, edited.visibility) == (False, "admins")
    assert edited.version == 2
    assert catalog.AgentRecord.get("profile").deleted_at == NOW  # a deleted built-in stays deleted


def test_reseeding_marks_a_builtin_as_system_again_and_nothing_else(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog))
    catalog.AgentRecord.get("help").update(actions=[
        catalog.AgentRecord.is_system.set(False),
        catalog.AgentRecord.description.set("edited"),
    ])

    report = catalog.seed_agents(builtins(catalog))

    assert report.updated == ["help"]
    assert report.unchanged == ["meddic", "profile", "admin"]
    help_agent = catalog.AgentRecord.get("help")
    assert help_agent.is_system is True
    assert help_agent.description == "edited"


def test_a_new_builtin_is_added_to_an_existing_catalog(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog)[:2])
    report = catalog.seed_agents(builtins(catalog))
    assert report.created == ["profile", "admin"]
    assert report.unchanged == ["help", "meddic"]


def test_a_concurrent_seeder_is_not_overwritten(catalog: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.seed_agents(builtins(catalog))
    catalog.AgentRecord.get("meddic").update(actions=[catalog.AgentRecord.description.set("edited")])
    # This seeder's read happened before the other seeder's write: it saw no agents.
    monkeypatch.setattr(catalog.AgentRecord, "batch_get", classmethod(lambda cls, *a, **k: iter(())))

    report = catalog.seed_agents(builtins(catalog))

    assert report.created == []
    assert report.unchanged == ["help", "meddic", "profile", "admin"]
    assert catalog.AgentRecord.get("meddic").description == "edited"


def test_seeding_migrates_records_that_predate_visibility_and_never_overwrites_a_choice(
    catalog: ModuleType,
) -> None:
    record = catalog.AgentRecord
    # As the code before visibility wrote them: only the two booleans.
    record("meddic", display_name="MEDDIC coach", is_public=False, requires_admin=False).save()
    record("admin", display_name="Admin tools", is_public=True, requires_admin=True).save()
    record("custom", display_name="Custom", is_public=True, requires_admin=False).save()
    record("help", display_name="Help", is_public=True).save()
    catalog.AgentRecord.get("help").update(actions=catalog.AgentRecord.visibility_actions("public"))
    assert record.get("meddic").visibility_setting is None
    assert record.get("meddic").visibility == "restricted"  # read through the mapping before migration

    report = catalog.seed_agents(builtins(catalog))

    assert report.created == ["profile"]
    assert sorted(report.migrated) == ["admin", "custom", "meddic"]
    # The stored flags' meaning, not the definitions' (meddic's definition says restricted too; admin's admins).
    assert [(name, record.get(name).visibility_setting) for name in ("admin", "custom", "help", "meddic")] == [
        ("admin", "admins"), ("custom", "public"), ("help", "public"), ("meddic", "restricted")]
    assert record.get("custom").is_public is True and record.get("custom").requires_admin is False

    record.get("custom").update(actions=record.visibility_actions("restricted"))  # an admin's choice
    again = catalog.seed_agents([*builtins(catalog), catalog.AgentDefinition("custom", "Custom", "x",
                                                                             visibility="public")])
    assert again.migrated == [] and again.created == []
    assert record.get("custom").visibility == "restricted"


def test_a_migration_never_overwrites_a_visibility_set_meanwhile(catalog: ModuleType,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.AgentRecord("custom", is_public=True).save()
    query = catalog.AgentRecord.by_kind.query

    def read_then_an_admin_restricts(*args: Any, **kwargs: Any) -> Any:
        found = list(query(*args, **kwargs))
        catalog.AgentRecord.get("custom").update(actions=catalog.AgentRecord.visibility_actions("restricted"))
        return iter(found)

    monkeypatch.setattr(catalog.AgentRecord.by_kind, "query", read_then_an_admin_restricts)
    assert catalog.migrate_visibility() == []
    assert catalog.AgentRecord.get("custom").visibility == "restricted"


def test_bad_definitions_are_refused(catalog: ModuleType) -> None:
    with pytest.raises(ValueError, match="help' must be public"):
        catalog.AgentDefinition("help", "Help", "x", visibility="restricted")
    with pytest.raises(ValueError, match="visibility of 'x' must be one of public, admins, restricted"):
        catalog.AgentDefinition("x", "X", "x", visibility="everyone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defined more than once: help"):
        catalog.seed_agents([*builtins(catalog), builtins(catalog)[0]])
    with pytest.raises(ValueError, match="must match"):
        catalog.AgentDefinition("MEDDIC", "x", "y")
    with pytest.raises(ValueError, match="must match"):
        catalog.AgentDefinition("-meddic", "x", "y")
    assert catalog.seed_agents([]).created == []


# -- listing and lookup -------------------------------------------------------------------------


def test_list_agents_is_one_query_sorted_and_without_deleted_agents(catalog: ModuleType,
                                                                     dynamo_calls: DynamoCalls) -> None:
    catalog.seed_agents(builtins(catalog))
    catalog.AgentRecord.get("profile").update(actions=[catalog.AgentRecord.deleted_at.set(NOW)])
    catalog.AgentRecord.get("admin").update(actions=[catalog.AgentRecord.enabled.set(False)])
    calls = dynamo_calls.start()

    agents = catalog.list_agents()

    assert [agent.name for agent in agents] == ["admin", "help", "meddic"]  # disabled ones are listed
    assert calls.operations == ["Query"]
    assert "Scan" not in calls.operations
    assert [agent.name for agent in catalog.list_agents(include_deleted=True)] == [
        "admin", "help", "meddic", "profile"]


def test_list_agents_reads_every_page(catalog: ModuleType, dynamo_calls: DynamoCalls) -> None:
    # ~40 KB per record: 30 records exceed DynamoDB's 1 MB page, so the Query is paginated.
    catalog.seed_agents([catalog.AgentDefinition(f"agent-{n:02}", f"Agent {n}", "x" * 40_000) for n in range(30)])
    calls = dynamo_calls.start()

    agents = catalog.list_agents()

    assert [agent.name for agent in agents] == [f"agent-{n:02}" for n in range(30)]
    assert set(calls.operations) == {"Query"}
    assert len(calls.operations) >= 2


def test_get_agent(catalog: ModuleType, dynamo_calls: DynamoCalls) -> None:
    catalog.seed_agents(builtins(catalog))
    calls = dynamo_calls.start()
    assert catalog.get_agent("meddic").display_name == "MEDDIC coach"
    assert catalog.get_agent("nobody") is None
    assert calls.operations == ["GetItem", "GetItem"]


def test_find_agent_by_name_or_alias_with_or_without_dash_in_any_case(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog))
    agents = catalog.list_agents()

    def found(word: str) -> str | None:
        agent = catalog.find_agent(word, agents)
        return agent.name if agent is not None else None

    assert found("meddic") == "meddic"
    assert found("-meddic") == "meddic"
    assert found("-MEDDIC") == "meddic"
    assert found(" Meddic ") == "meddic"
    assert found("medic") == "meddic"
    assert found("-Deal") == "meddic"
    assert found("?") == "help"
    assert found("research") == "profile"
    assert found("--meddic") is None  # one dash only
    assert found("med") is None
    assert found("-") is None
    assert found("") is None


def test_find_agent_prefers_a_name_over_another_agents_alias(catalog: ModuleType) -> None:
    catalog.seed_agents([
        catalog.AgentDefinition("research", "Research", "Web research"),
        catalog.AgentDefinition("profile", "Profile", "Company profile", aliases=("research",)),
    ])
    assert catalog.find_agent("-research", catalog.list_agents()).name == "research"


def test_deleted_agents_are_never_found(catalog: ModuleType) -> None:
    catalog.seed_agents(builtins(catalog))
    catalog.AgentRecord.get("meddic").update(actions=[catalog.AgentRecord.deleted_at.set(NOW)])
    assert catalog.find_agent("meddic", catalog.list_agents()) is None
    assert catalog.find_agent("medic", catalog.list_agents(include_deleted=True)) is None
    assert catalog.get_agent("meddic").is_deleted  # a GetItem still sees it, for the admin UI
