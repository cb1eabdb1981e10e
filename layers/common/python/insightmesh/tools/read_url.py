"""``read_url``: the main text of a public web page or PDF, fetched without becoming an SSRF.

The fetch (:func:`fetch`), hop by hop:

1. Only ``http``/``https`` URLs without credentials.
2. The host is resolved once (every A and AAAA record, :data:`resolver`); **every** address must
   be public (:func:`is_public_address`): not private, loopback, link-local (169.254.0.0/16, the
   metadata address), unique-local, multicast, reserved, unspecified, shared (100.64/10), nor an
   IPv6 form embedding one (IPv4-mapped and -compatible, 6to4, Teredo, NAT64). One bad record
   refuses the host, so a name cannot hide an internal address among public ones.
3. **Pinned**: the request goes to the checked address itself (the URL's host replaced by the IP),
   with the original ``Host`` header and, for https, the original name as TLS SNI and as the name
   the certificate is verified against (httpcore's ``sni_hostname`` extension). There is no second
   DNS lookup for an attacker's resolver to answer differently (DNS rebinding). The client keeps no
   idle connections (a pooled connection to an IP could otherwise serve another host that shares
   it, under the first host's certificate), and ignores proxy variables (``trust_env=False``).
4. Redirects are followed here, not by httpx, at most ``READ_URL_MAX_REDIRECTS`` times, each
   target going through 1-3 again.
5. Limits: the whole fetch (DNS, redirects, body) within ``READ_URL_TIMEOUT_SECONDS``; the body
   streamed and cut at ``READ_URL_MAX_BYTES`` (an HTML or text page keeps what was read, a PDF is
   refused: a cut PDF does not parse); only HTML, plain text and PDF.

``READ_URL_ALLOW_HOSTS`` (``host[:port]``) skips step 2 for loopback stand-ins in tests and under
``insightmesh dev`` (still resolved once and pinned); production refuses the setting.

Extraction runs in the child process of :mod:`insightmesh.knowledge.isolation` (a web page is
untrusted input): HTML by readability-lxml (:mod:`insightmesh.tools.html_text`), PDFs by the
knowledge base's pypdf reader with its page-tree and inflation limits and ``READ_URL_MAX_PDF_PAGES``.
The model gets at most ``READ_URL_MAX_CHARS`` characters and one ``Source`` (kind ``web``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, Field

from insightmesh.tools.base import Source, ToolContext, ToolError, ToolOutput
from insightmesh.tools.settings import ReadUrlSettings, read_url_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES: Final = frozenset({"text/plain", "text/markdown"})
PDF_TYPE: Final = "application/pdf"
ACCEPT: Final = "text/html,application/xhtml+xml,text/plain;q=0.9,application/pdf;q=0.8"
EXTRACT_TIMEOUT_SECONDS: Final = 15.0
EXTRACT_MEMORY_MB: Final = 512
SNIPPET_CHARS: Final = 300
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")


class UrlRefused(ToolError):
    """The URL (or a redirect) points somewhere the agent may not go; safe to show."""


# -- addresses ---------------------------------------------------------------------------------


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    packed = address.packed
    if packed[:12] == bytes(12) and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(packed[12:]))
    return found


def is_public_address(address: IPAddress) -> bool:
    """Whether a fetch may connect to ``address``: globally routable unicast, nothing embedded
    in it that is not (an IPv4-mapped ``::ffff:127.0.0.1`` is loopback)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(is_public_address(inner) for inner in embedded)
        if address.scope_id:
            return False
    if (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified):
        return False
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global


def system_resolver(host: str, port: int) -> list[str]:
    """Every A and AAAA address of ``host`` (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


# The resolver every fetch uses; tests replace it (monkeypatch) to map names to addresses.
resolver: Resolver = system_resolver
_dns_pool: Final = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="read-url-dns")


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the address it will be fetched from."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))


def _allowed(host: str, port: int, allow_hosts: Sequence[str]) -> bool:
    for entry in allow_hosts:
        parts = urlsplit(f"//{entry}")
        if parts.hostname == host and (parts.port is None or parts.port == port):
            return True
    return False


def check_url(url: str | httpx.URL, *, allow_hosts: Sequence[str] = (), deadline: float | None = None,
              resolve: Resolver | None = None) -> Target:
    """The address ``url`` may be fetched from, or UrlRefused saying why not."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise UrlRefused(f"not a valid URL: {str(url)[:200]!r}") from error
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs can be read, not {parsed.scheme or 'a relative URL'}")
    if parsed.userinfo:
        raise UrlRefused("URLs with credentials (user:password@) are not read")
    host = parsed.host.lower().rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if (host == "invalid" or host.endswith(".invalid")) and not _allowed(host, port, allow_hosts):
        # RFC 6761: never resolves (the offline web search's placeholders live there); no DNS wait.
        raise ToolError(f"{host} does not exist: it is a reserved name (an offline placeholder, not a web page)")
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    lookup = resolve or resolver
    try:
        addresses = _dns_pool.submit(lookup, host, port).result(timeout=remaining)
    except concurrent.futures.TimeoutError as error:
        raise ToolError(f"looking up {host} took too long") from error
    except (OSError, UnicodeError) as error:
        raise ToolError(f"could not resolve {host}") from error
    parsed_addresses: list[IPAddress] = []
    for text in addresses:
        try:
            parsed_addresses.append(ipaddress.ip_address(text))
        except ValueError as error:
            raise UrlRefused(f"{host} resolved to something that is not an address") from error
    if not parsed_addresses:
        raise ToolError(f"could not resolve {host}")
    if not _allowed(host, port, allow_hosts):
        for address in parsed_addresses:
            if not is_public_address(address):
                raise UrlRefused(f"{host} is not a public address ({address} is private, loopback, link-local "
                                 "or reserved); only public web pages can be read")
    # IPv4 first when the name has both: Lambda (outside a dual-stack VPC) has no IPv6 egress.
    ipv4 = [address for address in parsed_addresses if address.version == 4]
    return Target(url=parsed.copy_with(fragment=None), address=(ipv4 or parsed_addresses)[0])


# -- fetching ---------------------------------------------------------------------------------

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process's client for pages: no idle connections kept, no proxies from the environment,
    redirects never followed by httpx (see the module docstring)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(follow_redirects=False, trust_env=False,
                                   limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
                                   timeout=httpx.Timeout(10.0, connect=5.0))
        return _client


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool  # cut at the size limit


def _media_type(response: httpx.Response) -> tuple[str, str | None]:
    header = response.headers.get("Content-Type", "")
    media = header.split(";", 1)[0].strip().lower()
    return media, response.charset_encoding


def fetch(url: str, settings: ReadUrlSettings, *, client: httpx.Client | None = None,
          resolve: Resolver | None = None, clock: Callable[[], float] = time.monotonic) -> Fetched:
    """GET ``url`` within every limit of ``settings``; UrlRefused or ToolError on failure."""
    client = client or http_client()
    deadline = clock() + settings.READ_URL_TIMEOUT_SECONDS
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "identity"}
    current = url
    for hop in range(settings.READ_URL_MAX_REDIRECTS + 1):
        target = check_url(current, allow_hosts=settings.READ_URL_ALLOW_HOSTS, deadline=deadline, resolve=resolve)
        remaining = deadline - clock()
        if remaining <= 0:
            raise ToolError(f"reading the page took longer than {settings.READ_URL_TIMEOUT_SECONDS:g} s")
        extensions: dict[str, object] = {
            "timeout": httpx.Timeout(remaining, connect=min(remaining, 5.0)).as_dict()}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.url.host
        request = client.build_request("GET", target.pinned_url,
                                       headers={**headers, "Host": target.url.netloc.decode()})
        request.extensions.update(extensions)
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise ToolError(f"reading the page took longer than {settings.READ_URL_TIMEOUT_SECONDS:g} s") from error
        except httpx.TransportError as error:
            raise ToolError(f"could not connect to {target.url.host} ({type(error).__name__})") from error
        try:
            if response.status_code in REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise ToolError(f"{target.url.host} redirected without a Location")
                if hop >= settings.READ_URL_MAX_REDIRECTS:
                    raise ToolError(f"more than {settings.READ_URL_MAX_REDIRECTS} redirects")
                current = urljoin(str(target.url), location)
                continue
            if response.status_code >= 400:
                raise ToolError(f"{target.url.host} answered HTTP {response.status_code}")
            media, charset = _media_type(response)
            if media not in HTML_TYPES | TEXT_TYPES | {PDF_TYPE}:
                raise ToolError(f"cannot read {media or 'content without a type'}: only HTML, text and PDF")
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity; a compressed body would be inflated past the size limit per chunk.
                raise ToolError(f"{target.url.host} sent {encoding}-compressed content although asked not to")
            declared = response.headers.get("Content-Length", "")
            if media == PDF_TYPE and declared.isdigit() and int(declared) > settings.READ_URL_MAX_BYTES:
                raise ToolError(f"the PDF is larger than {settings.READ_URL_MAX_BYTES // 1024:,} KB")
            body, truncated = _read_body(response, settings, deadline, clock)
            if truncated and media == PDF_TYPE:
                raise ToolError(f"the PDF is larger than {settings.READ_URL_MAX_BYTES // 1024:,} KB")
            return Fetched(url=str(target.url), content_type=media, charset=charset, body=body, truncated=truncated)
        finally:
            response.close()
    raise ToolError(f"more than {settings.READ_URL_MAX_REDIRECTS} redirects")  # pragma: no cover


def _read_body(response: httpx.Response, settings: ReadUrlSettings, deadline: float,
               clock: Callable[[], float]) -> tuple[bytes, bool]:
    limit = settings.READ_URL_MAX_BYTES
    body = bytearray()
    try:
        for chunk in response.iter_raw():  # as the bytes arrive (a chunk_size would wait to fill it)
            body.extend(chunk)
            if len(body) > limit:
                return bytes(body[:limit]), True
            if clock() > deadline:
                raise ToolError(f"reading the page took longer than {settings.READ_URL_TIMEOUT_SECONDS:g} s")
    except httpx.TimeoutException as error:
        raise ToolError(f"reading the page took longer than {settings.READ_URL_TIMEOUT_SECONDS:g} s") from error
    except httpx.TransportError as error:
        raise ToolError(f"the connection broke while reading the page ({type(error).__name__})") from error
    return bytes(body), False


# -- extraction -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageText:
    title: str
    text: str
    truncated: bool


def extract(fetched: Fetched, settings: ReadUrlSettings) -> PageText:
    """Title and main text of a fetched page or PDF, read in the isolation child."""
    from insightmesh.knowledge import isolation

    max_chars = settings.READ_URL_MAX_CHARS
    if fetched.content_type == PDF_TYPE:
        return _pdf_text(fetched, settings)
    if fetched.content_type in TEXT_TYPES:
        from insightmesh.tools.html_text import normalize_whitespace

        text = normalize_whitespace(fetched.body.decode(fetched.charset or "utf-8", errors="replace"))
        return PageText(title="", text=text[:max_chars], truncated=fetched.truncated or len(text) > max_chars)
    try:
        result = isolation.run_isolated(
            "insightmesh.tools.html_text:extract_html", fetched.body,
            {"charset": fetched.charset, "max_chars": max_chars},
            timeout=EXTRACT_TIMEOUT_SECONDS, memory_bytes=EXTRACT_MEMORY_MB * 1024 * 1024,
            preload=("readability", "lxml.html"))
    except isolation.IsolationTimeout as error:
        raise ToolError(f"the page took longer than {EXTRACT_TIMEOUT_SECONDS:g} s to read") from error
    except isolation.IsolationOutOfMemory as error:
        raise ToolError(f"the page needs more than {EXTRACT_MEMORY_MB} MB to read") from error
    except isolation.IsolatedFailure as error:
        raise ToolError(f"could not read the page as HTML ({error.type_name})") from error
    except isolation.IsolationCrashed as error:
        raise ToolError("the HTML reader crashed on this page") from error
    if not isinstance(result, dict):
        raise ToolError("the HTML reader answered nothing")
    return PageText(title=str(result.get("title") or ""), text=str(result.get("text") or ""),
                    truncated=fetched.truncated or bool(result.get("truncated")))


def _pdf_text(fetched: Fetched, settings: ReadUrlSettings) -> PageText:
    from insightmesh.knowledge.extract import ExtractionError, extract_text, extraction_limits

    limits = dataclasses.replace(extraction_limits(), EXTRACT_MAX_PAGES=settings.READ_URL_MAX_PDF_PAGES,
                                 EXTRACT_MAX_CHARS=settings.READ_URL_MAX_CHARS,
                                 EXTRACT_TIMEOUT_SECONDS=EXTRACT_TIMEOUT_SECONDS)
    name = urlsplit(fetched.url).path.rsplit("/", 1)[-1] or "the PDF"
    try:
        document = extract_text(fetched.body, PDF_TYPE, filename=name, limits=limits)
    except ExtractionError as error:
        raise ToolError(f"could not read the PDF: {error}") from error
    from insightmesh.tools.html_text import normalize_whitespace

    return PageText(title=(document.title or "").strip(), text=normalize_whitespace(document.text),
                    truncated=document.truncated)


# -- the tool ---------------------------------------------------------------------------------


class ReadUrlParameters(BaseModel):
    url: str = Field(min_length=8, max_length=2048, description="The http(s) URL of a web page or PDF to read.")


class ReadUrlTool:
    name: ClassVar[str] = "read_url"
    description: ClassVar[str] = (
        "Read a public web page or PDF and return its main text (title first). Use it on URLs from "
        "web_search results or the conversation; cite what you use.")
    parameters: ClassVar[type[BaseModel]] = ReadUrlParameters
    timeout_seconds: ClassVar[float] = 40.0  # the fetch's own limit (15 s) plus extraction (15 s)

    def __init__(self, settings: ReadUrlSettings | None = None, *, resolve: Resolver | None = None) -> None:
        self._settings = settings
        self._resolve = resolve

    def allowed(self, context: ToolContext) -> bool:
        return context.enables(self.name)

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        if not isinstance(arguments, ReadUrlParameters):
            arguments = ReadUrlParameters.model_validate(arguments.model_dump())
        settings = self._settings or read_url_settings()
        context.progress(f"Reading {arguments.url[:120]}")
        fetched = fetch(arguments.url.strip(), settings, resolve=self._resolve)
        page = extract(fetched, settings)
        if not page.text.strip():
            raise ToolError("the page has no readable text")
        title = page.title or urlsplit(fetched.url).hostname or fetched.url
        note = "\n[… the page is longer than the tool reads; this is its beginning]" if page.truncated else ""
        text = f"{title}\n{fetched.url}\n\n{page.text[:settings.READ_URL_MAX_CHARS]}{note}"
        source = Source(title=title, url=fetched.url, kind="web", snippet=" ".join(page.text.split())[:SNIPPET_CHARS])
        return ToolOutput(text=text, sources=(source,))
