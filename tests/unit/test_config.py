"""Configuration guards and secret resolution (insightmesh.config)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from insightmesh.config import (
    DEV_SECRET_KEY,
    ConfigurationError,
    Environment,
    LlmProvider,
    Settings,
    get_secret,
    get_settings,
    load_settings,
)

GOOD_SECRET_KEY = "k" * 40


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A production environment that passes every guard; tests then break one thing at a time."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", GOOD_SECRET_KEY)
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://admin.example.com")
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    return monkeypatch


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _config_error(model: type[Settings] = Settings) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(model)
    return str(caught.value)


# -- defaults and well-formed values ------------------------------------------------------------


def test_defaults_load_in_development() -> None:
    settings = load_settings(Settings)

    assert settings.ENVIRONMENT is Environment.DEVELOPMENT
    assert settings.is_production is False
    assert settings.LOG_LEVEL == "INFO"
    assert settings.LLM_PROVIDER is LlmProvider.OFFLINE
    assert settings.MAX_REQUEST_BYTES == 1_048_576
    assert settings.ALLOWED_ORIGINS == ["http://localhost:3000", "http://127.0.0.1:3000"]
    assert settings.RATE_LIMIT_TABLE is None


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2048")
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "true")
    monkeypatch.setenv("LLM_PROVIDER", "anthropic")
    monkeypatch.setenv("RATE_LIMIT_TABLE", "limits")

    settings = load_settings(Settings)

    assert settings.LOG_LEVEL == "DEBUG"
    assert settings.MAX_REQUEST_BYTES == 2048
    assert settings.HEALTH_CHECK_TIMEOUT_SECONDS == 0.5
    assert settings.OAUTH_INSECURE_TRANSPORT is True
    assert settings.LLM_PROVIDER is LlmProvider.ANTHROPIC
    assert settings.RATE_LIMIT_TABLE == "limits"


def test_settings_are_immutable() -> None:
    settings = load_settings(Settings)
    with pytest.raises(ValueError, match="frozen"):
        settings.LOG_LEVEL = "DEBUG"  # type: ignore[misc]


def test_get_settings_is_validated_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    assert get_settings() is first
    assert get_settings().LOG_LEVEL == "INFO"

    get_settings.cache_clear()
    assert get_settings().LOG_LEVEL == "ERROR"


def test_get_settings_fails_fast_on_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        get_settings()


# -- malformed values name the variable ---------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "info"),
        ("MAX_REQUEST_BYTES", "abc"),
        ("MAX_REQUEST_BYTES", "10"),
        ("MAX_REQUEST_BYTES", "999999999"),
        ("ENVIRONMENT", "staging"),
        ("LLM_PROVIDER", "gpt-9"),
        ("OAUTH_INSECURE_TRANSPORT", "perhaps"),
        ("HEALTH_CHECK_TIMEOUT_SECONDS", "0"),
        ("HEALTH_CHECK_TIMEOUT_SECONDS", "soon"),
        ("RATE_LIMIT_PER_MINUTE", "-1"),
        ("SERVICE_NAME", ""),
        ("SERVICE_NAME", "x" * 65),
    ],
)
def test_a_bad_value_raises_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    message = _config_error()

    assert message.startswith("invalid configuration: ")
    assert f"{variable}:" in message


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    monkeypatch.setenv("MAX_REQUEST_BYTES", "abc")

    message = _config_error()

    assert "LOG_LEVEL:" in message
    assert "MAX_REQUEST_BYTES:" in message


def test_a_missing_required_variable_of_a_function_model_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class OrdersSettings(Settings):
        ORDERS_TABLE: str

    message = _config_error(OrdersSettings)
    assert "ORDERS_TABLE:" in message

    monkeypatch.setenv("ORDERS_TABLE", "orders")
    assert load_settings(OrdersSettings).ORDERS_TABLE == "orders"


def test_configuration_error_keeps_the_validation_error_as_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(Settings)
    assert isinstance(caught.value.__cause__, ValidationError)


# -- ALLOWED_ORIGINS parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example.com", ["https://a.example.com"]),
        ("https://a.example.com,https://b.example.com", ["https://a.example.com", "https://b.example.com"]),
        (" https://a.example.com , https://b.example.com ,, ", ["https://a.example.com", "https://b.example.com"]),
        ("", []),
        (" , ", []),
    ],
)
def test_allowed_origins_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", raw)
    assert load_settings(Settings).ALLOWED_ORIGINS == expected


def test_allowed_origins_given_as_a_list_in_code_is_kept() -> None:
    settings = Settings(ALLOWED_ORIGINS=["https://a.example.com"])
    assert settings.ALLOWED_ORIGINS == ["https://a.example.com"]


# -- production refuses development defaults ----------------------------------------------------


def test_a_good_production_config_is_accepted(production: pytest.MonkeyPatch) -> None:
    settings = load_settings(Settings)

    assert settings.is_production
    assert settings.ALLOWED_ORIGINS == ["https://admin.example.com"]
    assert settings.LLM_PROVIDER is LlmProvider.OPENAI
    assert settings.secret_key() == GOOD_SECRET_KEY


@pytest.mark.parametrize("variable", ["SECRET_KEY_SECRET_ID", "SECRET_KEY_PARAMETER"])
def test_production_accepts_a_secret_key_held_in_aws(production: pytest.MonkeyPatch, variable: str) -> None:
    production.delenv("SECRET_KEY")
    production.setenv(variable, "insightmesh/secret-key")
    assert load_settings(Settings).is_production


def test_production_refuses_the_development_secret_key(production: pytest.MonkeyPatch) -> None:
    production.setenv("SECRET_KEY", DEV_SECRET_KEY)
    message = _config_error()
    assert "SECRET_KEY" in message
    assert "development default" in message
    assert DEV_SECRET_KEY not in message


def test_production_refuses_a_short_secret_key(production: pytest.MonkeyPatch) -> None:
    production.setenv("SECRET_KEY", "s" * 31)
    message = _config_error()
    assert "SECRET_KEY must be at least 32 characters" in message
    assert "s" * 31 not in message


def test_production_accepts_a_secret_key_of_exactly_the_minimum_length(
    production: pytest.MonkeyPatch,
) -> None:
    production.setenv("SECRET_KEY", "s" * 32)
    assert load_settings(Settings).is_production


def test_production_requires_a_secret_key(production: pytest.MonkeyPatch) -> None:
    production.delenv("SECRET_KEY")
    message = _config_error()
    assert "SECRET_KEY" in message
    assert "SECRET_KEY_SECRET_ID" in message
    assert "required in production" in message


@pytest.mark.parametrize(
    ("origins", "complaint"),
    [
        ("*", "must not contain '*'"),
        ("https://admin.example.com,*", "must not contain '*'"),
        ("http://localhost:3000", "must not contain 'http://localhost:3000'"),
        ("https://localhost:8443", "must not contain 'https://localhost:8443'"),
        ("https://127.0.0.1", "must not contain 'https://127.0.0.1'"),
        ("http://admin.example.com", "must use https"),
        ("admin.example.com", "must use https"),
    ],
)
def test_production_refuses_unsafe_allowed_origins(
    production: pytest.MonkeyPatch, origins: str, complaint: str
) -> None:
    production.setenv("ALLOWED_ORIGINS", origins)
    message = _config_error()
    assert "ALLOWED_ORIGINS" in message
    assert complaint in message


def test_production_refuses_the_default_allowed_origins(production: pytest.MonkeyPatch) -> None:
    production.delenv("ALLOWED_ORIGINS")
    message = _config_error()
    assert "ALLOWED_ORIGINS must not contain 'http://localhost:3000'" in message


def test_production_refuses_insecure_oauth_transport(production: pytest.MonkeyPatch) -> None:
    production.setenv("OAUTH_INSECURE_TRANSPORT", "true")
    assert "OAUTH_INSECURE_TRANSPORT" in _config_error()


def test_production_refuses_the_offline_llm(production: pytest.MonkeyPatch) -> None:
    production.setenv("LLM_PROVIDER", "offline")
    assert "LLM_PROVIDER=offline" in _config_error()


def test_production_refuses_the_default_llm_provider(production: pytest.MonkeyPatch) -> None:
    production.delenv("LLM_PROVIDER")
    assert "LLM_PROVIDER=offline" in _config_error()


def test_production_reports_every_problem_at_once(production: pytest.MonkeyPatch) -> None:
    production.setenv("SECRET_KEY", "short")
    production.setenv("ALLOWED_ORIGINS", "*")
    production.setenv("OAUTH_INSECURE_TRANSPORT", "1")
    production.setenv("LLM_PROVIDER", "offline")

    message = _config_error()

    for variable in ("SECRET_KEY", "ALLOWED_ORIGINS", "OAUTH_INSECURE_TRANSPORT", "LLM_PROVIDER"):
        assert variable in message


def test_development_accepts_what_production_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("SECRET_KEY", "short")
    monkeypatch.setenv("ALLOWED_ORIGINS", "*,http://localhost:3000")
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "true")
    monkeypatch.setenv("LLM_PROVIDER", "offline")

    settings = load_settings(Settings)

    assert settings.ALLOWED_ORIGINS == ["*", "http://localhost:3000"]
    assert settings.secret_key() == "short"


def test_development_secret_key_defaults_to_the_development_key() -> None:
    assert load_settings(Settings).secret_key() == DEV_SECRET_KEY


def test_production_secret_key_fetched_from_aws_is_checked_again(
    production: pytest.MonkeyPatch, aws: None
) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/secret-key", SecretString="too-short")
    production.delenv("SECRET_KEY")
    production.setenv("SECRET_KEY_SECRET_ID", "insightmesh/secret-key")
    settings = load_settings(Settings)  # the cold start itself does not fetch the secret

    with pytest.raises(ConfigurationError, match="SECRET_KEY must be at least 32 characters"):
        settings.secret_key()


def test_production_secret_key_fetched_from_aws_is_returned(
    production: pytest.MonkeyPatch, aws: None
) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/secret-key", SecretString="a" * 48)
    production.delenv("SECRET_KEY")
    production.setenv("SECRET_KEY_SECRET_ID", "insightmesh/secret-key")

    assert load_settings(Settings).secret_key() == "a" * 48


# -- get_secret: env, then Secrets Manager, then SSM --------------------------------------------


def test_get_secret_prefers_the_environment_value(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "from-env")
    # Both point at things that do not exist: reaching AWS would raise.
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "does/not/exist")
    monkeypatch.setenv("SLACK_BOT_TOKEN_PARAMETER", "/does/not/exist")

    assert get_secret("SLACK_BOT_TOKEN") == "from-env"


def test_get_secret_reads_secrets_manager_by_name(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/slack-bot-token", SecretString="from-sm")
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "insightmesh/slack-bot-token")

    assert get_secret("SLACK_BOT_TOKEN") == "from-sm"


def test_get_secret_reads_secrets_manager_by_arn(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="insightmesh/arn", SecretString="by-arn")["ARN"]
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", arn)

    assert get_secret("SLACK_BOT_TOKEN") == "by-arn"


def test_get_secret_decodes_a_binary_secret(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/binary", SecretBinary=b"binary-value")
    monkeypatch.setenv("SIGNING_KEY_SECRET_ID", "insightmesh/binary")

    value = get_secret("SIGNING_KEY")

    assert value == "binary-value"
    assert isinstance(value, str)


def test_an_empty_environment_value_falls_through_to_aws(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/token", SecretString="from-sm")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "insightmesh/token")

    assert get_secret("SLACK_BOT_TOKEN") == "from-sm"


def test_get_secret_prefers_secrets_manager_to_ssm(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="insightmesh/token", SecretString="from-sm")
    boto3.client("ssm").put_parameter(Name="/insightmesh/token", Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "insightmesh/token")
    monkeypatch.setenv("SLACK_BOT_TOKEN_PARAMETER", "/insightmesh/token")

    assert get_secret("SLACK_BOT_TOKEN") == "from-sm"


def test_get_secret_reads_an_ssm_secure_string(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/insightmesh/signing", Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("SLACK_SIGNING_SECRET_PARAMETER", "/insightmesh/signing")

    assert get_secret("SLACK_SIGNING_SECRET") == "from-ssm"


def test_get_secret_without_any_source_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_secret("SLACK_BOT_TOKEN")
    message = str(caught.value)
    assert message.startswith("SLACK_BOT_TOKEN:")
    assert "SLACK_BOT_TOKEN_SECRET_ID" in message
    assert "SLACK_BOT_TOKEN_PARAMETER" in message


def test_get_secret_without_any_source_returns_the_default() -> None:
    assert get_secret("SLACK_BOT_TOKEN", default="fallback") == "fallback"


def test_a_configured_source_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "from-env")
    assert get_secret("SLACK_BOT_TOKEN", default="fallback") == "from-env"


def test_a_missing_aws_secret_is_an_error_not_the_default(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "does/not/exist")
    with pytest.raises(parameters.exceptions.GetParameterError):
        get_secret("SLACK_BOT_TOKEN", default="fallback")


# -- caching ------------------------------------------------------------------------------------


def test_secrets_manager_values_are_cached(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="insightmesh/token", SecretString="first")
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "insightmesh/token")

    assert get_secret("SLACK_BOT_TOKEN") == "first"
    secrets.put_secret_value(SecretId="insightmesh/token", SecretString="second")
    assert get_secret("SLACK_BOT_TOKEN") == "first"  # served from the cache, AWS not asked again

    parameters.clear_caches()
    assert get_secret("SLACK_BOT_TOKEN") == "second"


def test_ssm_values_are_cached(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/insightmesh/signing", Value="first", Type="SecureString")
    monkeypatch.setenv("SLACK_SIGNING_SECRET_PARAMETER", "/insightmesh/signing")

    assert get_secret("SLACK_SIGNING_SECRET") == "first"
    ssm.put_parameter(Name="/insightmesh/signing", Value="second", Type="SecureString", Overwrite=True)
    assert get_secret("SLACK_SIGNING_SECRET") == "first"

    parameters.clear_caches()
    assert get_secret("SLACK_SIGNING_SECRET") == "second"


def test_a_cached_secret_is_fetched_from_aws_once(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="insightmesh/token", SecretString="value")
    monkeypatch.setenv("SLACK_BOT_TOKEN_SECRET_ID", "insightmesh/token")

    calls: list[str] = []
    assert get_secret("SLACK_BOT_TOKEN") == "value"  # creates the provider and its client
    provider = parameters.base.DEFAULT_PROVIDERS["secrets"]
    provider.client.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("GetSecretValue")
    )
    provider.clear_cache()

    for _ in range(5):
        assert get_secret("SLACK_BOT_TOKEN") == "value"

    assert calls == ["GetSecretValue"]
