"""The SSRF guard of webhook URLs: where Coffer may send an organization's events.

Invariants:
- A URL is absolute http(s), https where WEBHOOK_REQUIRE_HTTPS, without credentials, and its host
  resolves; unless WEBHOOK_ALLOW_PRIVATE_URLS, EVERY address it resolves to is globally
  reachable (no private, loopback, link-local, reserved, multicast, IETF-protocol or mapped
  private address).
- It is checked when an endpoint is created or enabled and again before each attempt (DNS
  rebinding); the attempt connects to an address this check returned.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import ValidationFailed


class WebhookUrlRefused(ValidationFailed):
    """The URL is malformed, not https where required, or points at a non-public address."""


# --- URL checks ---------------------------------------------------------------------------------


# Not globally reachable although this Python's `is_global` says so: IETF protocol assignments
# (192.0.0.0/24 except the anycast 192.0.0.9 and 192.0.0.10, as newer Pythons have it).
_IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
_IETF_GLOBAL = {ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")}


def _address_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _address_is_public(mapped)
        if ip.is_site_local:  # fec0::/10, deprecated but still routed inside some networks
            return False
    elif ip in _IETF_PROTOCOL and ip not in _IETF_GLOBAL:
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _refuse(message: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(message, details={"url": [message]})


def webhook_url_check(url: str) -> list[str]:
    """Validate a webhook URL and resolve its host; returns the addresses it may be sent to.
    Raises WebhookUrlRefused (400) for a malformed URL, plain http where https is required, a
    host that does not resolve, or (unless WEBHOOK_ALLOW_PRIVATE_URLS) any non-public address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("Not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("The URL must be an absolute http(s) URL.")
    if parts.scheme != "https" and settings.WEBHOOK_REQUIRE_HTTPS:
        raise _refuse("The URL must use https.")
    if parts.username is not None or parts.password is not None:
        raise _refuse("The URL must not carry credentials.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise _refuse(f"The host {parts.hostname!r} does not resolve.") from None
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refuse(f"The host {parts.hostname!r} does not resolve.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        for address in addresses:
            if not _address_is_public(ipaddress.ip_address(address)):
                raise _refuse("The URL resolves to a private, loopback, link-local or reserved address.")
    return addresses
