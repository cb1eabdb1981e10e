"""web_search, read_url and sec_filings against the web stand-in on loopback (tests/standins/web_server.py):
each search provider's wire format, page and PDF extraction, the SSRF refusals, the size, time and
redirect limits, and EDGAR."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from insightmesh import resilience
from insightmesh.config import ConfigurationError
from insightmesh.resilience import RetryPolicy
from insightmesh.tools import read_url, web_search
from insightmesh.tools import settings as tool_settings
from insightmesh.tools.base import ToolContext, ToolError
from insightmesh.tools.read_url import ReadUrlParameters, ReadUrlTool, UrlRefused
from insightmesh.tools.sec_filings import EdgarClient, SecFilingsParameters, SecFilingsTool
from insightmesh.tools.settings import ReadUrlSettings, SecSettings
from insightmesh.tools.web_search import (
    BraveProvider,
    SearxngProvider,
    TavilyProvider,
    WebSearchError,
    WebSearchParameters,
    WebSearchTool,
)
from tests.standins.web_server import ACME_CIK, BOILERPLATE_FOOTER, BOILERPLATE_NAV, WebServer

CONTEXT = ToolContext(user_id="U1")
VARIABLES = ("ENVIRONMENT", "WEB_SEARCH_PROVIDER", "WEB_SEARCH_URL", "WEB_SEARCH_API_KEY",
             "WEB_SEARCH_API_KEY_SECRET_ID", "WEB_SEARCH_API_KEY_PARAMETER", "READ_URL_ALLOW_HOSTS",
             "SEC_USER_AGENT", "SEC_EDGAR_URL")


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    with WebServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    web.reset()
    resilience._breakers.clear()
    tool_settings.clear_caches()
    web_search.reset_provider()
    SecFilingsTool.reset()
    yield
    resilience._breakers.clear()
    tool_settings.clear_caches()
    web_search.reset_provider()
    SecFilingsTool.reset()


def no_wait_retry(sleeps: list[float] | None = None) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01, max_retry_after=5.0,
                       sleep=(sleeps.append if sleeps is not None else lambda _s: None))


# -- web_search ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "path"), [("tavily", "/search"), ("brave", "/res/v1/web/search"),
                                                ("searxng", "/search")])
def test_each_provider_speaks_its_wire_format(web: WebServer, monkeypatch: pytest.MonkeyPatch, provider: str,
                                              path: str) -> None:
    monkeypatch.setenv("WEB_SEARCH_PROVIDER", provider)
    monkeypatch.setenv("WEB_SEARCH_URL", web.url)
    monkeypatch.setenv("WEB_SEARCH_API_KEY", "test-key")
    output = WebSearchTool().run(WebSearchParameters(query="Acme Corp leadership", max_results=2), CONTEXT)
    assert web.calls(path) == 1
    assert [source.url for source in output.sources] == [f"{web.url}/pages/acme-leadership",
                                                         f"{web.url}/pages/acme-corp"]
    assert all(source.kind == "web" for source in output.sources)
    assert "Acme Corp leadership team" in output.text and "[offline" not in output.text
    assert "<strong>" not in output.text  # Brave's highlighting is removed


def test_tavily_and_brave_send_their_keys_where_each_expects_it(web: WebServer) -> None:
    timeout = httpx.Timeout(5.0)
    TavilyProvider(base_url=web.url, api_key=lambda: "tvly-1", timeout=timeout).search("Acme", 1)
    BraveProvider(base_url=web.url, api_key=lambda: "brave-1", timeout=timeout).search("Acme", 1)
    with pytest.raises(WebSearchError, match="HTTP 401"):
        TavilyProvider(base_url=web.url, api_key=lambda: "", timeout=timeout).search("Acme", 1)
    with pytest.raises(WebSearchError, match="HTTP 401"):
        BraveProvider(base_url=web.url, api_key=lambda: "", timeout=timeout).search("Acme", 1)


def test_a_missing_key_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SEARCH_PROVIDER", "tavily")
    with pytest.raises(ConfigurationError, match="WEB_SEARCH_API_KEY"):
        WebSearchTool().run(WebSearchParameters(query="Acme"), CONTEXT)


def test_searxng_results_are_cut_to_max_results(web: WebServer) -> None:
    hits = SearxngProvider(base_url=web.url, api_key=lambda: "", timeout=httpx.Timeout(5.0)).search("Acme", 3)
    assert len(hits) == 3


def test_rate_limits_are_retried_after_the_servers_retry_after(web: WebServer) -> None:
    web.fail("/res/v1/web/search", 429, count=1, retry_after="2")
    sleeps: list[float] = []
    provider = BraveProvider(base_url=web.url, api_key=lambda: "k", timeout=httpx.Timeout(5.0),
                             retry=no_wait_retry(sleeps))
    assert provider.search("Globex", 1)[0].url == f"{web.url}/pages/globex"
    assert sleeps == [2.0]
    assert web.calls("/res/v1/web/search") == 2


def test_a_provider_that_keeps_failing_opens_its_breaker(web: WebServer) -> None:
    web.fail("/search", 503, count=100)
    provider = SearxngProvider(base_url=web.url, api_key=lambda: "", timeout=httpx.Timeout(5.0),
                               retry=no_wait_retry())
    with pytest.raises(WebSearchError, match="did not answer"):
        provider.search("Acme", 1)
    # The 5th failed attempt opens the breaker: the second search's last attempt is not made.
    with pytest.raises(WebSearchError, match="unavailable for now"):
        provider.search("Acme", 1)
    with pytest.raises(WebSearchError, match="unavailable for now"):
        provider.search("Acme", 1)
    assert web.calls("/search") == 5


def test_the_offline_results_cannot_be_read_as_pages(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    monkeypatch.setattr(read_url, "resolver", lambda host, port: lookups.append(host) or ["93.184.216.34"])
    [first, *_] = WebSearchTool().run(WebSearchParameters(query="Acme"), CONTEXT).sources
    with pytest.raises(ToolError, match="reserved name"):
        reader(web).run(ReadUrlParameters(url=first.url), CONTEXT)
    assert lookups == []  # refused without asking DNS


def test_the_offline_provider_says_its_results_are_not_real() -> None:
    output = WebSearchTool().run(WebSearchParameters(query="profile Acme Corp"), CONTEXT)
    assert output.text.startswith("[offline web search]")
    assert "not pages from the web" in output.text
    assert output.sources and all(source.url.startswith("https://example.invalid/") for source in output.sources)
    again = WebSearchTool().run(WebSearchParameters(query="profile Acme Corp"), CONTEXT)
    assert again == output  # deterministic


# -- read_url --------------------------------------------------------------------------------------


def reader(web: WebServer, **overrides: object) -> ReadUrlTool:
    settings = ReadUrlSettings(READ_URL_ALLOW_HOSTS=(f"127.0.0.1:{web.port}",), **overrides)  # type: ignore[arg-type]
    return ReadUrlTool(settings)


def test_html_main_text_without_the_boilerplate(web: WebServer) -> None:
    output = reader(web).run(ReadUrlParameters(url=f"{web.url}/pages/acme-leadership"), CONTEXT)
    assert output.text.startswith(f"Acme Corp leadership team\n{web.url}/pages/acme-leadership\n\n")
    assert "Jane Doe is the chief executive officer of Acme Corp." in output.text
    for boilerplate in (BOILERPLATE_NAV, BOILERPLATE_FOOTER, "We use cookies", "Ten stocks to watch"):
        assert boilerplate not in output.text
    assert "  " not in output.text  # whitespace normalised
    [source] = output.sources
    assert (source.title, source.url, source.kind) == ("Acme Corp leadership team",
                                                       f"{web.url}/pages/acme-leadership", "web")


def test_pdf_text_and_title(web: WebServer) -> None:
    output = reader(web).run(ReadUrlParameters(url=f"{web.url}/files/acme-annual-report-2025.pdf"), CONTEXT)
    assert output.sources[0].title == "Acme Corp Annual Report 2025"
    assert "Revenue grew 8% to $4.2 billion." in output.text
    assert "Acme Corp expects revenue of $4.5 billion in fiscal 2026." in output.text


def test_the_pdf_page_limit(web: WebServer) -> None:
    output = reader(web, READ_URL_MAX_PDF_PAGES=1).run(
        ReadUrlParameters(url=f"{web.url}/files/acme-annual-report-2025.pdf"), CONTEXT)
    assert "Revenue grew 8%" in output.text and "fiscal 2026" not in output.text
    assert "longer than the tool reads" in output.text


def test_the_user_agent_is_sent(web: WebServer) -> None:
    reader(web, READ_URL_CONTACT="research@corp.example").run(
        ReadUrlParameters(url=f"{web.url}/pages/globex"), CONTEXT)
    [request] = web.requests()
    assert request["user_agent"].startswith("InsightMesh/")
    assert request["user_agent"].endswith("(+research agent; contact: research@corp.example)")


def test_the_metadata_address_is_refused_before_any_connection(web: WebServer) -> None:
    with pytest.raises(UrlRefused):
        reader(web).run(ReadUrlParameters(url="http://169.254.169.254/latest/meta-data/"), CONTEXT)


def test_loopback_outside_the_allow_list_is_refused(web: WebServer) -> None:
    with pytest.raises(UrlRefused):
        reader(web).run(ReadUrlParameters(url="http://127.0.0.1/"), CONTEXT)
    with pytest.raises(UrlRefused):  # the stand-in itself, once it is not allow-listed
        ReadUrlTool(ReadUrlSettings()).run(ReadUrlParameters(url=f"{web.url}/pages/acme-corp"), CONTEXT)
    assert web.calls("/pages/acme-corp") == 0


def test_a_redirect_to_a_private_address_is_refused(web: WebServer) -> None:
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin", "http://[::1]/",
                   f"http://127.0.0.1:{web.port + 1 if web.port < 65535 else web.port - 1}/"):
        with pytest.raises(UrlRefused):
            reader(web).run(ReadUrlParameters(url=f"{web.url}/redirect?to={target}"), CONTEXT)
    assert web.calls("/redirect") == 4


def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused(
        web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"127.0.0.1": ["127.0.0.1"], "internal.example": ["192.168.0.10"]}
    monkeypatch.setattr(read_url, "resolver", lambda host, port: table[host])
    with pytest.raises(UrlRefused, match=r"internal\.example"):
        reader(web).run(ReadUrlParameters(url=f"{web.url}/redirect?to=http://internal.example/"), CONTEXT)


def test_a_name_resolving_to_a_private_address_is_refused(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_url, "resolver", lambda host, port: ["127.0.0.1"])
    with pytest.raises(UrlRefused, match=r"attacker\.example"):
        reader(web).run(ReadUrlParameters(url=f"http://attacker.example:{web.port}/pages/acme-corp"), CONTEXT)
    assert web.calls("/pages/acme-corp") == 0


def test_the_connection_goes_to_the_address_checked_with_the_original_host(
        web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """One lookup per hop, and the request reaches the address it returned (no second lookup to
    rebind), carrying the name the URL gave."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.9.9.9"]  # a rebinding resolver

    monkeypatch.setattr(read_url, "resolver", resolve)
    tool = ReadUrlTool(ReadUrlSettings(READ_URL_ALLOW_HOSTS=(f"acme.example:{web.port}",)))
    output = tool.run(ReadUrlParameters(url=f"http://acme.example:{web.port}/pages/acme-corp"), CONTEXT)
    assert lookups == ["acme.example"]
    assert output.sources[0].url == f"http://acme.example:{web.port}/pages/acme-corp"
    assert [request["host"] for request in web.requests()] == [f"acme.example:{web.port}"]


def _certificate(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for ``name`` it signed: (CA file, certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web stand-in test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


@pytest.mark.parametrize("certificate_name", ["acme.example", "someone-else.example"])
def test_https_is_pinned_to_the_checked_address_and_verified_against_the_url_s_name(
        tmp_path: Path, certificate_name: str) -> None:
    """The connection goes to 127.0.0.1 (what the resolver answered), but TLS sends the URL's name
    as SNI and verifies the certificate against it: a certificate for another name is refused."""
    ca_file, cert_file, key_file = _certificate(tmp_path, certificate_name)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    server_context.sni_callback = lambda _socket, name, _context: sni.append(name)  # type: ignore[assignment]
    tls = WebServer()
    tls.socket = server_context.wrap_socket(tls.socket, server_side=True)
    settings = ReadUrlSettings(READ_URL_ALLOW_HOSTS=(f"acme.example:{tls.port}",))
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), trust_env=False,
                          follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0))
    url = f"https://acme.example:{tls.port}/pages/acme-corp"
    with tls, client:
        if certificate_name == "acme.example":
            fetched = read_url.fetch(url, settings, client=client, resolve=lambda host, port: ["127.0.0.1"])
            assert fetched.url == url and b"Acme Corp is an industrial technology company" in fetched.body
            assert [request["host"] for request in tls.requests()] == [f"acme.example:{tls.port}"]
        else:
            with pytest.raises(ToolError, match="could not connect") as refused:
                read_url.fetch(url, settings, client=client, resolve=lambda host, port: ["127.0.0.1"])
            assert "Hostname mismatch" in str(refused.value.__cause__)
            assert tls.requests() == []
    assert sni == ["acme.example"]


def test_redirects_are_followed_up_to_the_limit(web: WebServer) -> None:
    output = reader(web).run(ReadUrlParameters(url=f"{web.url}/redirect/5"), CONTEXT)
    assert output.sources[0].url == f"{web.url}/pages/acme-corp"
    web.reset()
    with pytest.raises(ToolError, match="more than 5 redirects"):
        reader(web).run(ReadUrlParameters(url=f"{web.url}/redirect/6"), CONTEXT)
    assert web.calls("/pages/acme-corp") == 0


def test_a_page_past_the_size_limit_is_cut_and_a_pdf_refused(web: WebServer) -> None:
    tool = reader(web, READ_URL_MAX_BYTES=256 * 1024)
    output = tool.run(ReadUrlParameters(url=f"{web.url}/big?mb=3"), CONTEXT)
    assert "filler paragraph" in output.text and "longer than the tool reads" in output.text
    with pytest.raises(ToolError, match="PDF is larger than 256 KB"):
        tool.run(ReadUrlParameters(url=f"{web.url}/big.pdf?mb=3"), CONTEXT)


def test_a_page_that_never_ends_stops_at_the_time_limit(web: WebServer) -> None:
    with pytest.raises(ToolError, match="longer than 1 s"):
        reader(web, READ_URL_TIMEOUT_SECONDS=1).run(ReadUrlParameters(url=f"{web.url}/slow"), CONTEXT)


def test_other_content_types_are_refused(web: WebServer) -> None:
    with pytest.raises(ToolError, match="only HTML, text and PDF"):
        reader(web).run(ReadUrlParameters(url=f"{web.url}/image.png"), CONTEXT)


def test_an_error_status_is_a_tool_error(web: WebServer) -> None:
    with pytest.raises(ToolError, match="HTTP 404"):
        reader(web).run(ReadUrlParameters(url=f"{web.url}/pages/nothing-here"), CONTEXT)


# -- sec_filings -----------------------------------------------------------------------------------


def sec_tool(web: WebServer) -> SecFilingsTool:
    settings = SecSettings(SEC_USER_AGENT="Corp Research research@corp.example", SEC_EDGAR_URL=web.url)
    return SecFilingsTool(EdgarClient(settings, retry=no_wait_retry()))


def test_edgar_full_text_search(web: WebServer) -> None:
    output = sec_tool(web).run(SecFilingsParameters(query="Dayton factory", company="Acme Corp"), CONTEXT)
    [source] = output.sources
    assert source.kind == "filing"
    assert source.url == f"{web.url}/Archives/edgar/data/{ACME_CIK}/000199900126000021/acme-8k-2026-03.htm"
    assert "8-K filed 2026-03-03" in output.text
    [request] = web.requests()
    assert request["path"] == "/LATEST/search-index"
    assert request["user_agent"] == "Corp Research research@corp.example"


def test_edgar_company_facts_by_ticker_and_by_name(web: WebServer) -> None:
    tool = sec_tool(web)
    by_ticker = tool.run(SecFilingsParameters(company="acme", what="facts"), CONTEXT)
    assert "Revenue: $4.20 billion (fiscal 2025" in by_ticker.text
    assert "Shares outstanding: 182,000,000" in by_ticker.text
    assert by_ticker.sources[0].url == f"{web.url}/edgar/browse/?CIK={ACME_CIK}"
    by_name = tool.run(SecFilingsParameters(company="Globex", what="facts"), CONTEXT)
    assert "Revenue: $7.90 billion" in by_name.text
    # The ticker map is read once per process, the facts once per question.
    assert web.calls("/files/company_tickers.json") == 1
    assert web.calls(f"/api/xbrl/companyfacts/CIK{ACME_CIK:010d}.json") == 1


def test_an_unknown_company_is_said_so(web: WebServer) -> None:
    output = sec_tool(web).run(SecFilingsParameters(company="Initech", what="facts"), CONTEXT)
    assert "No SEC registrant matches 'Initech'" in output.text and not output.sources


def test_edgar_rate_limits_are_retried(web: WebServer) -> None:
    web.fail("/LATEST/search-index", 429, count=1, retry_after="0")
    output = sec_tool(web).run(SecFilingsParameters(query="Globex"), CONTEXT)
    assert output.sources and web.calls("/LATEST/search-index") == 2


def test_sec_filings_needs_a_user_agent(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_EDGAR_URL", web.url)
    with pytest.raises(ToolError, match="SEC_USER_AGENT"):
        SecFilingsTool().run(SecFilingsParameters(query="Acme"), CONTEXT)
    assert web.calls("/LATEST/search-index") == 0
    monkeypatch.setenv("SEC_USER_AGENT", "Corp Research research@corp.example")
    tool_settings.clear_caches()
    assert SecFilingsTool().run(SecFilingsParameters(query="Acme"), CONTEXT).sources


# -- cold start ------------------------------------------------------------------------------------


def test_the_worker_refuses_read_url_allow_hosts_at_cold_start_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.conftest import ROOT, load_handler

    worker = ROOT / "functions" / "conversation_worker" / "handler.py"
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("READ_URL_ALLOW_HOSTS", "127.0.0.1:8770")
    with pytest.raises(ConfigurationError, match="READ_URL_ALLOW_HOSTS"):
        load_handler(worker)
    monkeypatch.delenv("READ_URL_ALLOW_HOSTS")
    tool_settings.clear_caches()
    assert load_handler(worker).lambda_handler
