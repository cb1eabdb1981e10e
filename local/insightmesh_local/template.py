"""Reading the SAM template and resolving its intrinsic functions to local values.

PyYAML is used with a loader that understands CloudFormation's short-form tags (``!Ref``,
``!GetAtt``, ``!Sub`` ...), turning each into its long form (``{"Ref": ...}``). cfn-lint ships a
similar loader but importing cfn-lint costs about a second, which `insightmesh dev` should not
pay on every start; the tag mapping is eight lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template cannot be read or resolved; the message names the resource and the cause."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only


@dataclass
class Template:
    path: Path
    body: dict[str, Any]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources = self.body.get("Resources")
        return resources if isinstance(resources, dict) else {}

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return self.body.get("Parameters") or {}

    @property
    def conditions(self) -> dict[str, Any]:
        return self.body.get("Conditions") or {}

    @property
    def function_globals(self) -> dict[str, Any]:
        return ((self.body.get("Globals") or {}).get("Function")) or {}

    @property
    def local_metadata(self) -> dict[str, Any]:
        """``Metadata: InsightMesh::Local``: environment variables that set parameters locally."""
        metadata = (self.body.get("Metadata") or {}).get("InsightMesh::Local")
        return metadata if isinstance(metadata, dict) else {}

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") in types}


def load_template(path: str | Path) -> Template:
    path = Path(path).resolve()
    try:
        body = load_yaml(path.read_text())
    except OSError as error:
        raise TemplateError(f"cannot read template {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise TemplateError(f"template {path} is not valid YAML: {error}") from error
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources section")
    for name, resource in body["Resources"].items():
        if not isinstance(resource, dict) or "Type" not in resource:
            raise TemplateError(f"resource {name}: no Type")
    return Template(path=path, body=body)


@dataclass
class Physical:
    """What a resource is called locally: the value of Ref and of each GetAtt attribute."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


class Resolver:
    """Resolves Ref, GetAtt, Sub, Join, Select, Split, If and the condition functions."""

    def __init__(
        self,
        template: Template,
        *,
        parameters: Mapping[str, str],
        physical: dict[str, Physical],
        region: str,
        stack_name: str,
    ) -> None:
        self.template = template
        self.parameter_values = dict(parameters)
        self.physical = physical
        self.region = region
        self.stack_name = stack_name

    def parameter(self, name: str) -> str:
        if name in self.parameter_values:
            return self.parameter_values[name]
        spec = self.template.parameters.get(name)
        if spec is None:
            raise TemplateError(f"unknown parameter or resource {name!r}")
        if "Default" not in spec:
            raise TemplateError(
                f"parameter {name} has no Default; pass it with --parameter-overrides {name}=VALUE"
            )
        return str(spec["Default"])

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }.get(name)

    def ref(self, name: str) -> str:
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.physical:
            return self.physical[name].ref
        if name in self.template.resources:
            raise TemplateError(f"resource {name} is referenced before it exists locally")
        return self.parameter(name)

    def get_att(self, name: str, attribute: str) -> str:
        physical = self.physical.get(name)
        if physical is None:
            raise TemplateError(f"GetAtt {name}.{attribute}: no such resource created locally")
        if attribute not in physical.attrs:
            raise TemplateError(f"GetAtt {name}.{attribute}: attribute not known locally")
        return physical.attrs[attribute]

    def condition(self, name: str) -> bool:
        if name not in self.template.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self.resolve(self.template.conditions[name]))

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            key = match.group(1).strip()
            if key in variables:
                return str(self.resolve(variables[key]))
            if "." in key and not key.startswith("AWS::"):
                resource, attribute = key.split(".", 1)
                return self.get_att(resource, attribute)
            return self.ref(key)

        return _SUB_VAR.sub(replace, text).replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value if not _is_no_value(item)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(str(self.resolve(parts[0])), str(self.resolve(parts[1])))
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    return self._sub(argument[0], argument[1])
                return self._sub(argument, {})
            if key == "Fn::Join":
                return str(argument[0]).join(str(self.resolve(item)) for item in self.resolve(argument[1]))
            if key == "Fn::Select":
                return self.resolve(argument[1])[int(self.resolve(argument[0]))]
            if key == "Fn::Split":
                return str(self.resolve(argument[1])).split(argument[0])
            if key == "Fn::If":
                return self.resolve(argument[1] if self.condition(argument[0]) else argument[2])
            if key == "Fn::Equals":
                return str(self.resolve(argument[0])) == str(self.resolve(argument[1]))
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic function {key} is not supported by the local runtime")
        return {key: self.resolve(item) for key, item in value.items() if not _is_no_value(item)}


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}


def references(value: Any) -> set[str]:
    """Logical ids that ``value`` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                if isinstance(parts[0], str):
                    found.add(parts[0])
            elif key == "Fn::Sub":
                text = argument[0] if isinstance(argument, list) else argument
                for match in _SUB_VAR.finditer(str(text)):
                    found.add(match.group(1).split(".", 1)[0].strip())
                if isinstance(argument, list):
                    found |= references(argument[1])
            else:
                found |= references(argument)
    return found


def merge_globals(function_globals: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (function wins), lists concatenate, scalars are replaced."""
    merged: dict[str, Any] = {}
    for key in set(function_globals) | set(properties):
        if key not in properties:
            merged[key] = function_globals[key]
        elif key not in function_globals:
            merged[key] = properties[key]
        else:
            merged[key] = _merge_value(function_globals[key], properties[key])
    return merged


def _merge_value(global_value: Any, local_value: Any) -> Any:
    if isinstance(global_value, dict) and isinstance(local_value, dict) and not _is_intrinsic(local_value):
        result = dict(global_value)
        for key, value in local_value.items():
            result[key] = _merge_value(result[key], value) if key in result else value
        return result
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _is_intrinsic(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref"))
