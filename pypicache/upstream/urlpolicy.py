"""Where an upstream page's file URLs may lead: the defence against server-side request forgery.

A page is data from outside, so a file URL on it is a request pypicache would make on the
page's behalf. It may reach the upstream's own origin, public addresses, and the networks
an admin allows; never this machine, its cloud metadata service or the private network
behind it. The address check is made on resolved addresses (``connect_addresses``), by the
code that opens the socket, so no spelling of an address and no DNS rebinding gets past it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urljoin, urlsplit
from urllib.request import url2pathname

from pypicache.errors import UpstreamUnavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
# Ranges the ipaddress module's flags miss or describe differently between Python versions.
_EXTRA_FORBIDDEN = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fec0::/10",  # site local (deprecated)
    )
)


class URLRefused(UpstreamUnavailable):
    """A file URL (or a redirect) leads somewhere the policy forbids; nothing is fetched.

    Not an OSError on purpose: urllib3 neither retries it nor wraps it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"upstream file URL refused: {message}")


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Whitespace-separated CIDRs (``10.0.0.0/8 fd00::/8``); ValueError names a bad one."""
    networks = []
    for word in value.split():
        try:
            networks.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise ValueError(f"not a network in CIDR notation: {word!r}") from None
    return tuple(networks)


def _unmapped(address: IPAddress) -> IPAddress:
    """An IPv4 address written as IPv6 (``::ffff:127.0.0.1``) is that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
    return address


def is_forbidden(address: IPAddress) -> bool:
    """Loopback, link-local, private, unique-local, multicast, reserved or unspecified.

    IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by
    the embedded address too, so none of them is a way around the IPv4 rules.
    """
    address = _unmapped(address)
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
        or any(address in net for net in _EXTRA_FORBIDDEN if net.version == address.version)
    ):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.sixtofour, *(address.teredo or ())]
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return any(inner is not None and is_forbidden(inner) for inner in embedded)
    return False


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None


def origin(scheme: str, host: str, port: int | None) -> Origin:
    """The origin as compared: lower-case scheme and host, no brackets, default port filled."""
    scheme = scheme.lower()
    host = host.strip("[]").rstrip(".").lower()
    return Origin(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme))


def url_origin(url: str) -> Origin:
    parts = _split(url)
    try:
        port = parts.port
    except ValueError:
        raise URLRefused(f"{url!r}: bad port") from None
    return origin(parts.scheme, parts.hostname or "", port)


def redirect_target(url: str, location: str) -> str:
    """Where a redirect from ``url`` leads (fragment dropped); refused if it is no URL."""
    try:
        return urljoin(url, location).split("#", 1)[0]
    except ValueError:
        raise URLRefused(f"{location!r}: not a URL (a redirect from {url})") from None


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:
        raise URLRefused(f"{url!r}: not a URL") from None


class URLPolicy:
    """Decides, for one upstream, which file URLs and which peer addresses may be used."""

    def __init__(self, upstream_url: str, allowed_networks: Iterable[IPNetwork] = ()) -> None:
        self.upstream = url_origin(upstream_url)
        self.allowed_networks = tuple(allowed_networks)
        self._root = _local_path(upstream_url).resolve() if self.upstream.scheme == "file" else None

    def check_url(self, url: str) -> Path | None:
        """Refuse a URL by its form alone; for a file:// URL, the resolved path to read.

        Addresses are checked later, on the resolved peer (``check_address``).
        """
        parts = _split(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return self._local_file(url)
        if scheme not in ("http", "https"):
            raise URLRefused(f"{url!r}: only http(s) URLs are followed")
        if not parts.hostname:
            raise URLRefused(f"{url!r}: no host")
        if parts.username or parts.password:
            raise URLRefused(f"{url!r}: credentials in a URL from the upstream")
        url_origin(url)
        return None

    def _local_file(self, url: str) -> Path:
        if self._root is None:
            raise URLRefused(f"{url!r}: file:// URLs only from a file:// upstream")
        if _split(url).netloc not in ("", "localhost"):
            raise URLRefused(f"{url!r}: a file URL on another host")
        try:
            path = _local_path(url).resolve()
        except (OSError, ValueError) as exc:
            raise URLRefused(f"{url!r}: not a readable path ({exc})") from None
        if not path.is_relative_to(self._root):
            raise URLRefused(f"{url!r}: outside the upstream's directory {self._root}")
        return path

    def is_upstream(self, scheme: str, host: str, port: int | None) -> bool:
        return origin(scheme, host, port) == self.upstream

    def address_allowed(self, address: str | IPAddress) -> bool:
        """Whether a peer outside the upstream's origin may be at ``address``."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        address = _unmapped(address)
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return True
        return not is_forbidden(address)

    def connect_addresses(
        self, scheme: str, host: str, port: int
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, tuple]]:
        """getaddrinfo's answers for ``host`` that may be connected to; refuses if none may.

        The caller connects to exactly these socket addresses, so what was checked is
        what is reached (a second lookup could answer differently).
        """
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        if self.is_upstream(scheme, host, port):
            return [(af, kind, proto, sa) for af, kind, proto, _, sa in infos]
        allowed = [
            (af, kind, proto, sa)
            for af, kind, proto, _, sa in infos
            if af in (socket.AF_INET, socket.AF_INET6) and self.address_allowed(sa[0])
        ]
        if not allowed:
            addresses = ", ".join(sorted({str(info[4][0]) for info in infos}))
            raise URLRefused(
                f"{scheme}://{host}:{port} resolves to {addresses}, not the upstream's origin "
                "and not a public address (pypicache.upstream_allowed_networks allows more)"
            )
        return allowed


def _local_path(url: str) -> Path:
    return Path(url2pathname(unquote(urlsplit(url).path)))
