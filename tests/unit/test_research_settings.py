"""The research settings (insightmesh.research.settings) and how the template passes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from insightmesh.config import ConfigurationError, load_settings
from insightmesh.research.settings import ResearchSettings
from insightmesh_local.template import Template, load_template

PARAMETERS = {"RESEARCH_MAX_TOKENS": "ResearchMaxTokens",
              "RESEARCH_RESEARCHER_MAX_TOKENS": "ResearchResearcherMaxTokens",
              "RESEARCH_RESEARCHER_MAX_STEPS": "ResearchResearcherMaxSteps",
              "RESEARCH_MAX_CONCURRENCY": "ResearchMaxConcurrency",
              "RESEARCH_MAX_REVISIONS": "ResearchMaxRevisions"}


def test_blank_values_take_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in PARAMETERS:
        monkeypatch.setenv(variable, "")
    settings = load_settings(ResearchSettings)
    assert (settings.RESEARCH_MAX_TOKENS, settings.RESEARCH_MAX_REVISIONS, settings.RESEARCH_MAX_CONCURRENCY) == (
        200_000, 2, 6)


@pytest.mark.parametrize(("variable", "value"), [("RESEARCH_MAX_TOKENS", "10"), ("RESEARCH_MAX_REVISIONS", "3"),
                                                 ("RESEARCH_MAX_CONCURRENCY", "0"), ("RESEARCH_MAX_TOKENS", "lots")])
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                     value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(ResearchSettings)


def test_every_setting_is_a_template_parameter_that_insightmesh_dev_passes() -> None:
    template: Template = load_template(Path(__file__).parents[2] / "infra" / "template.yaml")
    assert set(PARAMETERS) == set(ResearchSettings.model_fields)
    research = template.resources["ResearchFunction"]["Properties"]["Environment"]["Variables"]
    shared = template.function_globals["Environment"]["Variables"]
    for variable, parameter in PARAMETERS.items():
        assert (research.get(variable) or shared.get(variable)) == {"Ref": parameter}
        assert template.local_metadata["EnvironmentParameters"][parameter] == variable
    assert shared["RESEARCH_MAX_TOKENS"] == {"Ref": "ResearchMaxTokens"}, "the worker records the cap on a run"
