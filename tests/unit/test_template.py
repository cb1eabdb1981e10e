"""infra/template.yaml: lint-clean, and consistent with the code that depends on it."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pynamodb.attributes import TTLAttribute
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

import insightmesh
from insightmesh_local.template import Template, load_template, references

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"

# Tables a pynamodb model does not own (e.g. written by a powertools utility). Empty today.
TABLES_WITHOUT_MODEL: set[str] = set()


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TEMPLATE)


@pytest.mark.parametrize("path", [TEMPLATE, ROOT / "tests" / "fixtures" / "runtime" / "template.yaml"])
def test_cfn_lint_is_clean(path):
    result = subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_globals_runtime_and_powertools_settings(template):
    function = template.function_globals
    assert function["Runtime"] == "python3.13"
    assert function["Tracing"] == "Active"
    assert function["Layers"] == [{"Ref": "CommonLayer"}]
    variables = function["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(variables)


def test_api_has_stage_throttling(template):
    api = template.of_type("AWS::Serverless::HttpApi")["HttpApi"]["Properties"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(api["DefaultRouteSettings"])


def _global_refs(template: Template) -> dict[str, str]:
    """Globals variable → the logical id it references."""
    found = {}
    for name, value in template.function_globals["Environment"]["Variables"].items():
        if isinstance(value, dict) and "Ref" in value:
            found[name] = value["Ref"]
    return found


def test_every_table_and_queue_is_declared_to_the_functions_by_convention(template):
    refs = _global_refs(template)
    tables = set(template.of_type("AWS::DynamoDB::Table"))
    queues = template.of_type("AWS::SQS::Queue")
    dead_letter_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values() if "RedrivePolicy" in (q.get("Properties") or {})
    }
    for table in tables:
        assert any(var.endswith("_TABLE") and ref == table for var, ref in refs.items()), f"{table} not in Globals"
    for queue in queues:
        suffix = "_DLQ_URL" if queue in dead_letter_targets else "_QUEUE_URL"
        assert any(var.endswith(suffix) and ref == queue for var, ref in refs.items()), f"{queue}: no *{suffix}"


def test_health_function_may_describe_every_table_and_queue(template):
    statements = template.resources["HealthFunction"]["Properties"]["Policies"][0]["Statement"]
    allowed = {
        action: {entry["Fn::GetAtt"][0] for entry in statement["Resource"]}
        for statement in statements for action in statement["Action"]
    }
    assert allowed["dynamodb:DescribeTable"] == set(template.of_type("AWS::DynamoDB::Table"))
    assert allowed["sqs:GetQueueAttributes"] == set(template.of_type("AWS::SQS::Queue"))


def _default(template: Template, value: Any) -> Any:
    """A value, or the default of the parameter it references."""
    if isinstance(value, dict) and "Ref" in value:
        return template.parameters[value["Ref"]]["Default"]
    return value


def test_queue_visibility_covers_six_times_the_consumer_timeout(template):
    for name, resource in template.of_type("AWS::Serverless::Function").items():
        properties = resource["Properties"]
        timeout = _default(template, properties.get("Timeout", template.function_globals.get("Timeout", 3)))
        for event in (properties.get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
            visibility = _default(template, template.resources[queue]["Properties"].get("VisibilityTimeout", 30))
            assert visibility >= 6 * timeout, f"{name}: {queue} visibility {visibility}s < 6 x {timeout}s"


# -- pynamodb models against their tables -----------------------------------------------------------

def all_models() -> list[type[Model]]:
    for module in pkgutil.walk_packages(insightmesh.__path__, "insightmesh."):
        importlib.import_module(module.name)

    def walk(cls: type) -> list[type]:
        return [sub for child in cls.__subclasses__() for sub in (child, *walk(child))]

    return [m for m in walk(Model) if m.__module__.startswith("insightmesh.") and hasattr(m.Meta, "table_env")]


def model_problems(model: type[Model], template: Template) -> list[str]:
    """Every way ``model`` disagrees with the table the template binds to its variable."""
    refs = _global_refs(template)
    table_id = refs.get(model.Meta.table_env)
    if table_id is None:
        return [f"{model.__name__}: no Globals variable {model.Meta.table_env}"]
    properties: dict[str, Any] = template.resources[table_id]["Properties"]
    types = {d["AttributeName"]: d["AttributeType"] for d in properties["AttributeDefinitions"]}
    problems = []

    def check_keys(where: str, schema: list[dict[str, str]], hash_key: Any, range_key: Any) -> None:
        declared = {k["KeyType"]: k["AttributeName"] for k in schema}
        for role, attribute in (("HASH", hash_key), ("RANGE", range_key)):
            name = attribute.attr_name if attribute is not None else None
            if declared.get(role) != name:
                problems.append(f"{where}: {role} key is {declared.get(role)} in the template, {name} in the model")
            elif attribute is not None and types.get(name) != attribute.attr_type:
                problems.append(f"{where}: {name} is {types.get(name)} in the template, {attribute.attr_type} "
                                "in the model")

    attributes = model.get_attributes().values()
    check_keys(f"{model.__name__}/{table_id}", properties["KeySchema"],
               next((a for a in attributes if a.is_hash_key), None),
               next((a for a in attributes if a.is_range_key), None))
    template_indexes = {i["IndexName"]: i for i in properties.get("GlobalSecondaryIndexes", [])}
    model_indexes = {i.Meta.index_name: i for i in vars(model).values() if isinstance(i, GlobalSecondaryIndex)}
    # A table of several item kinds (the conversations table) may have sparse indexes only one kind
    # uses: a model declares what it queries, and every index of the table is declared by a model.
    shared_table = [m for m in all_models() if refs.get(m.Meta.table_env) == table_id]
    declared_anywhere = {i.Meta.index_name for m in shared_table for i in vars(m).values()
                         if isinstance(i, GlobalSecondaryIndex)}
    if not set(model_indexes) <= set(template_indexes) or set(template_indexes) != declared_anywhere:
        problems.append(f"{model.__name__}: GSIs {sorted(model_indexes)} vs template {sorted(template_indexes)}")
    for name in set(template_indexes) & set(model_indexes):
        index_attributes = tuple(next((a for a in model_indexes[name].Meta.attributes.values() if test(a)), None)
                                 for test in (lambda a: a.is_hash_key, lambda a: a.is_range_key))
        check_keys(f"{model.__name__}.{name}", template_indexes[name]["KeySchema"], *index_attributes)
    ttl = next((a.attr_name for a in attributes if isinstance(a, TTLAttribute)), None)
    declared_ttl = (properties.get("TimeToLiveSpecification") or {}).get("AttributeName")
    if ttl != declared_ttl:
        problems.append(f"{model.__name__}: TTL attribute {ttl} in the model, {declared_ttl} in the template")
    return problems


def test_every_model_matches_its_table(template):
    models = all_models()
    assert models, "no pynamodb models found"
    assert [problem for model in models for problem in model_problems(model, template)] == []


def test_every_table_has_a_model(template):
    bound = {_global_refs(template)[model.Meta.table_env] for model in all_models()}
    assert set(template.of_type("AWS::DynamoDB::Table")) - bound == TABLES_WITHOUT_MODEL


def test_the_consistency_check_catches_a_drifted_model(template):
    from pynamodb.attributes import NumberAttribute, UnicodeAttribute

    from insightmesh.aws import model_meta

    class Drifted(Model):
        Meta = model_meta("RATE_LIMIT_TABLE")
        key = NumberAttribute(hash_key=True)  # S in the template
        extra = UnicodeAttribute(range_key=True)  # no range key in the template

    problems = model_problems(Drifted, template)
    assert any("RANGE key is None in the template, extra in the model" in p for p in problems)
    assert any("key is S in the template, N in the model" in p for p in problems)
    assert any("TTL attribute None in the model, expires_at" in p for p in problems)


# -- data survives the stack; never silent ------------------------------------------------------------

STATEFUL_TYPES = ("AWS::DynamoDB::Table", "AWS::KMS::Key", "AWS::SecretsManager::Secret", "AWS::SQS::Queue")


def test_every_stateful_resource_is_retained_on_delete_and_on_replacement(template):
    stateful = template.of_type(*STATEFUL_TYPES)
    assert len(stateful) >= 30 and "ConversationDeadLetterQueue" in stateful and "CredentialsKey" in stateful
    careless = {name: (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy"))
                for name, resource in stateful.items()
                if (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) != ("Retain", "Retain")}
    assert careless == {}


def test_the_retention_check_catches_a_new_table_without_a_policy(template):
    drifted = {**template.resources, "NewTable": {"Type": "AWS::DynamoDB::Table", "Properties": {}}}
    assert [name for name, resource in drifted.items() if resource["Type"] in STATEFUL_TYPES
            and resource.get("DeletionPolicy") != "Retain"] == ["NewTable"]


def test_the_conversation_dlq_has_a_consumer(template):
    function = template.resources["ConversationDeadLetterFunction"]["Properties"]
    assert function["CodeUri"] == "../functions/conversation_dlq/"
    [event] = function["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ConversationDeadLetterQueue", "Arn"]}
    assert "ReportBatchItemFailures" in event["Properties"]["FunctionResponseTypes"]
    redrive = template.resources["ConversationQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "ConversationMaxReceiveCount"}
    assert template.parameters["ConversationMaxReceiveCount"]["Default"] == 5


def _alarms(template: Template) -> list[dict[str, Any]]:
    return [resource["Properties"] for resource in template.of_type("AWS::CloudWatch::Alarm").values()]


def _watched(template: Template, metric: str) -> set[str]:
    """Logical ids (or literal values) of the resources whose ``metric`` has an alarm."""
    found = set()
    for alarm in _alarms(template):
        if alarm["MetricName"] != metric:
            continue
        for dimension in alarm["Dimensions"]:
            value = dimension["Value"]
            found.add(value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0] if "Fn::GetAtt" in value
                      else json.dumps(value))
    return found


def test_every_function_has_error_and_throttle_alarms(template):
    functions = set(template.of_type("AWS::Serverless::Function"))
    assert functions <= _watched(template, "Errors")
    assert functions <= _watched(template, "Throttles")


def test_queues_dead_letters_and_the_llm_breaker_have_alarms(template):
    queues = template.of_type("AWS::SQS::Queue")
    dead_letter_queues = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                          for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    assert dead_letter_queues == {"ConversationDeadLetterQueue", "JobDeadLetterQueue", "UsageDeadLetterQueue"}
    assert dead_letter_queues <= _watched(template, "ApproximateNumberOfMessagesVisible")
    assert "ConversationQueue" in _watched(template, "ApproximateAgeOfOldestMessage")
    [breaker] = [a for a in _alarms(template) if a["MetricName"] == "CircuitOpened"]
    assert breaker["Namespace"] == "InsightMesh"
    assert {d["Name"]: d["Value"] for d in breaker["Dimensions"]} == {
        "dependency": {"Fn::Sub": "llm:${LlmProvider}"}, "service": "insightmesh"}


def test_alarms_notify_the_optional_topic(template):
    assert template.parameters["AlarmTopicArn"]["Default"] == ""
    for alarm in _alarms(template):
        assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                                    {"Ref": "AWS::NoValue"}]}


def test_every_function_serving_the_auth_routes_gets_the_sign_in_settings(template):
    """The console serves /auth in-process (it builds the admin app), so it reads the same rate
    limits as the admin API; a variable given to one but not the other is silently the default."""
    wanted = {"API_RATE_LIMIT_PER_MINUTE": "ApiRateLimitPerMinute",
              "API_IP_RATE_LIMIT_PER_MINUTE": "ApiIpRateLimitPerMinute",
              "LOGIN_RATE_LIMIT_PER_MINUTE": "LoginRateLimitPerMinute"}
    for name in ("AdminApiFunction", "ConsoleFunction"):
        variables = template.resources[name]["Properties"]["Environment"]["Variables"]
        assert {key: variables.get(key) for key in wanted} == {key: {"Ref": ref} for key, ref in wanted.items()}, name


def test_every_parameter_insightmesh_dev_maps_is_used_by_a_resource(template):
    """A parameter in the local mapping that no resource references is configuration that does nothing."""
    mapped = set(template.local_metadata["EnvironmentParameters"])
    used: set[str] = set()
    for resource in template.resources.values():
        used |= references(resource)
    used |= references(template.function_globals)
    used |= references(template.conditions)
    assert sorted(mapped - used) == []
