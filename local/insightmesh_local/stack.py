"""Creating the template's resources in the emulator, in dependency order, from the template alone.

There is no list of resources in code: every resource of a supported type found in
``infra/template.yaml`` is created with the properties the template gives it. Types that need no
local counterpart (IAM, API Gateway, layers ...) are recorded and skipped; functions are run by
``functions.Functions`` instead of being created in the emulator.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from insightmesh_local.functions import FunctionSpec
from insightmesh_local.template import (
    ACCOUNT_ID,
    Physical,
    Resolver,
    Template,
    TemplateError,
    merge_globals,
    references,
)

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/insightmesh-local-scheduler"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@dataclass
class Stack:
    template: Template
    stack_name: str
    region: str
    endpoint_url: str
    parameters: dict[str, str]
    log: Callable[[str], None] = print
    physical: dict[str, Physical] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    custom_resources: list[str] = field(default_factory=list)  # run by the runtime once functions serve
    resolver: Resolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.template, parameters=self.parameters, physical=self.physical,
                                 region=self.region, stack_name=self.stack_name)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, **_credential_kwargs()
            )
        return self._clients[service]

    # -- naming ----------------------------------------------------------------------------------
    def name_for(self, logical_id: str, *, suffix: str = "", max_length: int = 80) -> str:
        base = f"{self.stack_name}-{logical_id}"
        return base[: max_length - len(suffix)] + suffix

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    # -- order -------------------------------------------------------------------------------------
    def creation_order(self) -> list[str]:
        resources = self.template.resources
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in visiting:
                raise TemplateError(f"circular reference: {' -> '.join((*chain, name))}")
            visiting.add(name)
            resource = resources[name]
            depends = resource.get("DependsOn") or []
            depends = [depends] if isinstance(depends, str) else depends
            wanted = references(resource.get("Properties") or {}) | set(depends)
            if resource.get("Type") in FUNCTION_TYPES:
                # Functions' events may point at queues and schedules; their names come from here.
                wanted |= references(self.template.function_globals)
            for dependency in sorted(wanted):
                if dependency in resources and dependency != name:
                    visit(dependency, (*chain, name))
            visiting.discard(name)
            order.append(name)

        for name in resources:
            visit(name, ())
        return order

    # -- creation ----------------------------------------------------------------------------------
    def deploy(self) -> None:
        for logical_id in self.creation_order():
            resource = self.template.resources[logical_id]
            kind = resource["Type"]
            condition = resource.get("Condition")
            if condition and not self.resolver.condition(condition):
                self.skipped.append(f"{logical_id} (condition {condition} is false)")
                continue
            creator = _CREATORS.get(kind)
            if kind == "AWS::CloudFormation::CustomResource" or kind.startswith("Custom::"):
                creator = _custom_resource
            try:
                if creator is None:
                    self.physical[logical_id] = Physical(ref=self.name_for(logical_id),
                                                         attrs={"Arn": self.arn("local", logical_id)})
                    self.skipped.append(f"{logical_id} ({kind})")
                    continue
                properties = self.resolver.resolve(resource.get("Properties") or {})
                self.physical[logical_id] = creator(self, logical_id, properties)
                self.created.append(f"{logical_id} ({kind})")
            except TemplateError as error:
                raise TemplateError(f"{logical_id}: {error}") from error
            except ClientError as error:
                message = error.response.get("Error", {}).get("Message", str(error))
                raise TemplateError(f"{logical_id} ({kind}): the emulator refused it: {message}") from error
        self._create_function_schedules()

    # -- functions ---------------------------------------------------------------------------------
    def function_specs(self, base_environment: dict[str, str]) -> list[FunctionSpec]:
        specs = []
        for logical_id, resource in self.template.of_type(*FUNCTION_TYPES).items():
            if logical_id not in self.physical:
                continue
            try:
                properties = merge_globals(self.template.function_globals, resource.get("Properties") or {})
                specs.append(self._function_spec(logical_id, properties, base_environment))
            except TemplateError as error:
                raise TemplateError(f"function {logical_id}: {error}") from error
        return specs

    def _function_spec(self, logical_id: str, properties: dict[str, Any],
                       base_environment: dict[str, str]) -> FunctionSpec:
        code_uri = properties.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError("CodeUri must be a local folder")
        code_dir = (self.template.base_dir / code_uri).resolve()
        if not code_dir.is_dir():
            raise TemplateError(f"CodeUri {code_uri} is not a folder ({code_dir})")
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        resolved = {key: _env_str(self.resolver.resolve(value)) for key, value in variables.items()}
        name = self.physical[logical_id].ref
        timeout = float(self.resolver.resolve(properties.get("Timeout", 3)))
        memory = int(self.resolver.resolve(properties.get("MemorySize", 128)))
        environment = {
            **base_environment,
            **resolved,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": str(self.resolver.resolve(
                (properties.get("LoggingConfig") or {}).get("LogGroup", f"/aws/lambda/{name}"))),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{properties.get('Runtime', 'python3.12')}",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": str(properties.get("Handler", "")),
            **LOCAL_CREDENTIALS,
        }
        return FunctionSpec(
            logical_id=logical_id,
            name=name,
            code_dir=code_dir,
            handler=str(properties.get("Handler", "")),
            timeout=timeout,
            memory=memory,
            environment=environment,
            events=properties.get("Events") or {},
            reserved_concurrency=properties.get("ReservedConcurrentExecutions"),
        )

    def _create_function_schedules(self) -> None:
        """SAM turns a ScheduleV2 event into an EventBridge Scheduler schedule: do the same."""
        for logical_id, resource in self.template.of_type(*FUNCTION_TYPES).items():
            if logical_id not in self.physical:
                continue
            events = (resource.get("Properties") or {}).get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") != "ScheduleV2":
                    continue
                properties = self.resolver.resolve(event.get("Properties") or {})
                target: dict[str, Any] = {"Arn": self.physical[logical_id].attrs["Arn"], "RoleArn": SCHEDULER_ROLE}
                if "Input" in properties:
                    target["Input"] = properties["Input"]
                _create_schedule(self, f"{logical_id}{event_name}", {
                    "Name": properties.get("Name") or self.name_for(f"{logical_id}{event_name}", max_length=64),
                    "ScheduleExpression": properties["ScheduleExpression"],
                    "ScheduleExpressionTimezone": properties.get("ScheduleExpressionTimezone", "UTC"),
                    "State": properties.get("State", "ENABLED"),
                    "FlexibleTimeWindow": {"Mode": "OFF"},
                    "Target": target,
                    **({"GroupName": properties["GroupName"]} if properties.get("GroupName") else {}),
                })


def _credential_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
    }


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# -- one creator per resource type ---------------------------------------------------------------

def _create_table(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("TableName") or stack.name_for(logical_id, max_length=255)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5,
                                                                              "WriteCapacityUnits": 5}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if p.get(key):
            request[key] = p[key]
    dynamodb = stack.client("dynamodb")
    try:
        description = dynamodb.create_table(**request)["TableDescription"]
    except dynamodb.exceptions.ResourceInUseException:
        description = dynamodb.describe_table(TableName=name)["Table"]
    ttl = p.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true", "True"):
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "AttributeName": ttl["AttributeName"], "Enabled": True})
    attrs = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attrs["StreamArn"] = description["LatestStreamArn"]
    return Physical(ref=name, attrs=attrs)


def _create_simple_table(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    key = p.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
    return _create_table(stack, logical_id, {
        "TableName": p.get("TableName"),
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    })


_QUEUE_ATTRIBUTES = ("DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                     "VisibilityTimeout", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
                     "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled")


def _create_queue(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    fifo = p.get("FifoQueue") in (True, "true", "True")
    name = p.get("QueueName") or stack.name_for(logical_id, suffix=".fifo" if fifo else "")
    attributes = {key: _env_str(p[key]) for key in _QUEUE_ATTRIBUTES if key in p}
    if fifo:
        attributes["FifoQueue"] = "true"
    for key in ("RedrivePolicy", "RedriveAllowPolicy"):
        if key in p:
            attributes[key] = p[key] if isinstance(p[key], str) else json.dumps(p[key])
    url = stack.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Physical(ref=url, attrs={"Arn": stack.arn("sqs", name), "QueueName": name, "QueueUrl": url})


def _create_key(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    request: dict[str, Any] = {"Description": p.get("Description", logical_id),
                               "KeyUsage": p.get("KeyUsage", "ENCRYPT_DECRYPT"),
                               "KeySpec": p.get("KeySpec", "SYMMETRIC_DEFAULT")}
    if p.get("KeyPolicy"):
        request["Policy"] = p["KeyPolicy"] if isinstance(p["KeyPolicy"], str) else json.dumps(p["KeyPolicy"])
    metadata = stack.client("kms").create_key(**request)["KeyMetadata"]
    if p.get("EnableKeyRotation") in (True, "true"):
        stack.client("kms").enable_key_rotation(KeyId=metadata["KeyId"])
    return Physical(ref=metadata["KeyId"], attrs={"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})


def _create_alias(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    stack.client("kms").create_alias(AliasName=p["AliasName"], TargetKeyId=p["TargetKeyId"])
    return Physical(ref=p["AliasName"], attrs={})


def _generated_secret(spec: dict[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
    alphabet = "".join(ch for ch in alphabet if ch not in str(spec.get("ExcludeCharacters", "")))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    template = spec.get("SecretStringTemplate")
    if template and spec.get("GenerateStringKey"):
        document = json.loads(template)
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def _create_secret(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or stack.name_for(logical_id, max_length=256)
    value = p.get("SecretString") or _generated_secret(p.get("GenerateSecretString") or {})
    client = stack.client("secretsmanager")
    try:
        arn = client.create_secret(Name=name, SecretString=value, Description=p.get("Description", ""))["ARN"]
    except client.exceptions.ResourceExistsException:
        arn = client.describe_secret(SecretId=name)["ARN"]
    return Physical(ref=arn, attrs={"Id": arn})


def _create_parameter(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or f"/{stack.stack_name}/{logical_id}"
    stack.client("ssm").put_parameter(Name=name, Value=str(p["Value"]), Type=p.get("Type", "String"), Overwrite=True)
    return Physical(ref=name, attrs={"Type": p.get("Type", "String"), "Value": str(p["Value"])})


def _create_schedule_group(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or stack.name_for(logical_id, max_length=64)
    client = stack.client("scheduler")
    try:
        arn = client.create_schedule_group(Name=name)["ScheduleGroupArn"]
    except client.exceptions.ConflictException:
        arn = client.get_schedule_group(Name=name)["Arn"]
    return Physical(ref=name, attrs={"Arn": arn})


def _create_schedule(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or stack.name_for(logical_id, max_length=64)
    request = {key: p[key] for key in ("ScheduleExpression", "ScheduleExpressionTimezone", "State", "Description",
                                       "GroupName", "StartDate", "EndDate", "ActionAfterCompletion") if key in p}
    target = dict(p["Target"])
    target.setdefault("RoleArn", SCHEDULER_ROLE)
    client = stack.client("scheduler")
    try:
        arn = client.create_schedule(Name=name, FlexibleTimeWindow=p.get("FlexibleTimeWindow") or {"Mode": "OFF"},
                                     Target=target, **request)["ScheduleArn"]
    except client.exceptions.ConflictException:
        arn = client.get_schedule(Name=name, GroupName=p.get("GroupName", "default"))["Arn"]
    return Physical(ref=name, attrs={"Arn": arn})


def _create_log_group(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    """A function's log group with its retention (LoggingConfig.LogGroup names it; local functions
    log to the terminal, so the group stays empty)."""
    name = p.get("LogGroupName") or stack.name_for(logical_id, max_length=512)
    client = stack.client("logs")
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=name)
    if "RetentionInDays" in p:
        client.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    return Physical(ref=name, attrs={"Arn": stack.arn("logs", f"log-group:{name}:*")})


def _create_dashboard(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    """The dashboard, its body resolved with the local names (a body that is not JSON fails here)."""
    name = p.get("DashboardName") or stack.name_for(logical_id, max_length=255)
    try:
        json.loads(p["DashboardBody"])
    except (KeyError, TypeError, ValueError) as error:
        raise TemplateError(f"DashboardBody is not a JSON document: {error}") from error
    stack.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=p["DashboardBody"])
    return Physical(ref=name, attrs={})


def _custom_resource(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    if "ServiceToken" not in p:
        raise TemplateError("a custom resource needs a ServiceToken")
    stack.custom_resources.append(logical_id)
    return Physical(ref=f"{stack.stack_name}-{logical_id}", attrs={})


def _function(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("FunctionName") or stack.name_for(logical_id, max_length=64)
    return Physical(ref=name, attrs={"Arn": stack.arn("lambda", f"function:{name}")})


def _http_api(stack: Stack, logical_id: str, p: dict[str, Any]) -> Physical:
    return Physical(ref=f"local{logical_id.lower()}"[:10], attrs={"ApiEndpoint": "http://127.0.0.1"})


_CREATORS: dict[str, Callable[[Stack, str, dict[str, Any]], Physical]] = {
    "AWS::DynamoDB::Table": _create_table,
    "AWS::Serverless::SimpleTable": _create_simple_table,
    "AWS::SQS::Queue": _create_queue,
    "AWS::KMS::Key": _create_key,
    "AWS::KMS::Alias": _create_alias,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::SSM::Parameter": _create_parameter,
    "AWS::Scheduler::ScheduleGroup": _create_schedule_group,
    "AWS::Scheduler::Schedule": _create_schedule,
    "AWS::Logs::LogGroup": _create_log_group,
    "AWS::CloudWatch::Dashboard": _create_dashboard,
    "AWS::Serverless::Function": _function,
    "AWS::Lambda::Function": _function,
    "AWS::Serverless::HttpApi": _http_api,
    "AWS::Serverless::Api": _http_api,
}
