"""read_url's address checks (with a patched resolver, never the network) and the web tools'
settings: what production refuses, what the User-Agents say."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from insightmesh.config import ConfigurationError, load_settings
from insightmesh.tools import read_url
from insightmesh.tools.base import ToolError
from insightmesh.tools.read_url import UrlRefused, check_url, is_public_address
from insightmesh.tools.sec_filings import RateLimiter
from insightmesh.tools.settings import ReadUrlSettings, SecSettings, WebSearchSettings
from insightmesh_local.template import Template, load_template

VARIABLES = ("ENVIRONMENT", "WEB_SEARCH_PROVIDER", "WEB_SEARCH_URL", "WEB_SEARCH_API_KEY", "READ_URL_ALLOW_HOSTS",
             "READ_URL_CONTACT", "SEC_USER_AGENT", "SEC_EDGAR_URL")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield


def resolving(table: dict[str, list[str]]) -> read_url.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]
    return resolve


@pytest.mark.parametrize("address", [
    "169.254.169.254",        # the instance metadata service
    "169.254.1.1",            # link-local
    "127.0.0.1", "127.8.9.10",  # loopback
    "10.0.0.1", "172.16.5.4", "192.168.1.1",  # private
    "100.64.0.1",             # shared address space (carrier-grade NAT)
    "0.0.0.0",                # unspecified
    "224.0.0.1", "239.1.1.1",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "::127.0.0.1",            # IPv4-compatible
    "2002:7f00:1::",          # 6to4 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",     # NAT64 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo of a private client address
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946",
                                     "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_the_metadata_address_is_refused() -> None:
    with pytest.raises(UrlRefused, match="not a public address"):
        check_url("http://169.254.169.254/latest/meta-data/",
                  resolve=resolving({"169.254.169.254": ["169.254.169.254"]}))


def test_loopback_outside_the_allow_list_is_refused() -> None:
    resolve = resolving({"127.0.0.1": ["127.0.0.1"]})
    with pytest.raises(UrlRefused):
        check_url("http://127.0.0.1/", resolve=resolve)
    # The allow-list names a port: the same host on another port is still refused.
    with pytest.raises(UrlRefused):
        check_url("http://127.0.0.1/", allow_hosts=("127.0.0.1:8770",), resolve=resolve)
    target = check_url("http://127.0.0.1:8770/page", allow_hosts=("127.0.0.1:8770",), resolve=resolve)
    assert str(target.address) == "127.0.0.1"
    # A host without a port admits every port of it.
    assert check_url("http://127.0.0.1:9/", allow_hosts=("127.0.0.1",), resolve=resolve).url.port == 9


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(UrlRefused, match=r"intranet\.example"):
        check_url("https://intranet.example/", resolve=resolving({"intranet.example": ["10.1.2.3"]}))


def test_one_private_record_among_public_ones_refuses_the_name() -> None:
    resolve = resolving({"mixed.example": ["93.184.216.34", "2606:2800:220:1::1", "127.0.0.1"]})
    with pytest.raises(UrlRefused):
        check_url("https://mixed.example/", resolve=resolve)


def test_an_ipv4_mapped_answer_is_refused() -> None:
    with pytest.raises(UrlRefused):
        check_url("http://sneaky.example/", resolve=resolving({"sneaky.example": ["::ffff:169.254.169.254"]}))


def test_the_checked_address_is_the_one_connected_to() -> None:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"]

    target = check_url("https://www.example.com:8443/a?b=1#frag", resolve=resolve)
    assert calls == ["www.example.com"]
    assert str(target.pinned_url) == "https://93.184.216.34:8443/a?b=1"
    assert target.url.host == "www.example.com"  # sent as Host and TLS SNI


def test_ipv4_is_preferred_when_a_name_has_both() -> None:
    resolve = resolving({"dual.example": ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"],
                         "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"]})
    assert str(check_url("https://dual.example/", resolve=resolve).address) == "93.184.216.34"
    assert str(check_url("https://v6.example/", resolve=resolve).pinned_url) == (
        "https://[2606:2800:220:1:248:1893:25c8:1946]/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/",
                                 "http://user:secret@example.com/", "/relative/path"])
def test_other_schemes_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, resolve=resolving({"example.com": ["93.184.216.34"]}))


def test_an_unresolvable_name_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="could not resolve"):
        check_url("http://nowhere.example/", resolve=resolving({}))


# -- settings --------------------------------------------------------------------------------------


def test_production_refuses_read_url_allow_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("READ_URL_ALLOW_HOSTS", "127.0.0.1:8770")
    with pytest.raises(ConfigurationError, match="READ_URL_ALLOW_HOSTS"):
        load_settings(ReadUrlSettings)
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings(ReadUrlSettings).READ_URL_ALLOW_HOSTS == ("127.0.0.1:8770",)


def test_production_refuses_the_offline_web_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="WEB_SEARCH_PROVIDER=offline"):
        load_settings(WebSearchSettings)
    monkeypatch.setenv("WEB_SEARCH_PROVIDER", "brave")
    assert load_settings(WebSearchSettings).base_url == "https://api.search.brave.com"
    monkeypatch.setenv("WEB_SEARCH_URL", "http://search.internal")
    with pytest.raises(ConfigurationError, match="https"):
        load_settings(WebSearchSettings)


def test_searxng_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SEARCH_PROVIDER", "searxng")
    with pytest.raises(ConfigurationError, match="WEB_SEARCH_URL"):
        load_settings(WebSearchSettings)


def test_allow_hosts_entries_must_be_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READ_URL_ALLOW_HOSTS", "127.0.0.1:8770, http://x/y")
    with pytest.raises(ConfigurationError, match="READ_URL_ALLOW_HOSTS"):
        load_settings(ReadUrlSettings)


def test_the_user_agent_names_the_agent_and_its_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    from insightmesh import __version__

    assert load_settings(ReadUrlSettings).user_agent == f"InsightMesh/{__version__} (+research agent)"
    monkeypatch.setenv("READ_URL_CONTACT", "research@corp.example")
    assert load_settings(ReadUrlSettings).user_agent == (
        f"InsightMesh/{__version__} (+research agent; contact: research@corp.example)")


def test_sec_user_agent_needs_a_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_USER_AGENT", "InsightMesh")
    with pytest.raises(ConfigurationError, match="SEC_USER_AGENT"):
        load_settings(SecSettings)
    monkeypatch.setenv("SEC_USER_AGENT", "Corp Research research@corp.example")
    settings = load_settings(SecSettings)
    assert settings.base("efts") == "https://efts.sec.gov"
    monkeypatch.setenv("SEC_EDGAR_URL", "http://127.0.0.1:8770/")
    assert load_settings(SecSettings).base("data") == "http://127.0.0.1:8770"


def test_the_sec_rate_limiter_spaces_calls_a_tenth_of_a_second_apart() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert slept == [0.1, 0.1, 0.1]
    now[0] += 5
    limiter.wait()
    assert slept == [0.1, 0.1, 0.1]  # an idle limiter lets the next call through at once


# -- the template ----------------------------------------------------------------------------------

TOOL_VARIABLES = {"WEB_SEARCH_PROVIDER": "WebSearchProvider", "WEB_SEARCH_URL": "WebSearchUrl",
                  "READ_URL_ALLOW_HOSTS": "ReadUrlAllowHosts", "READ_URL_CONTACT": "ReadUrlContact",
                  "SEC_EDGAR_URL": "SecEdgarUrl", "SEC_USER_AGENT": "SecUserAgent"}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(Path(__file__).parents[2] / "infra" / "template.yaml")


@pytest.mark.parametrize("function", ["ConversationWorkerFunction", "ResearchFunction"])
def test_the_functions_that_run_tools_get_the_web_tool_settings(template: Template, function: str) -> None:
    if function not in template.resources:
        pytest.skip(f"{function} is not in the template yet")
    properties = template.resources[function]["Properties"]
    variables = properties["Environment"]["Variables"]
    for variable, parameter in TOOL_VARIABLES.items():
        assert variables[variable] == {"Ref": parameter}
        # insightmesh dev sets the parameter from the variable of the same name.
        assert template.local_metadata["EnvironmentParameters"][parameter] == variable
    assert variables["WEB_SEARCH_API_KEY_SECRET_ID"] == {"Ref": "WebSearchApiKeyValue"}
    assert template.local_metadata["EnvironmentParameters"]["WebSearchApiKey"] == "WEB_SEARCH_API_KEY"
    assert template.parameters["WebSearchApiKey"]["NoEcho"] is True
    assert {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "WebSearchApiKeyValue"}}} in (
        properties["Policies"])


def test_production_refuses_the_allow_list_at_deploy(template: Template) -> None:
    rule = template.body["Rules"]["ReadUrlAllowHostsIsForDevelopment"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Environment"}, "production"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "ReadUrlAllowHosts"}, ""]}
