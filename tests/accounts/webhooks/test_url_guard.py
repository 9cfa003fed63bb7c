"""Review 2: webhook URLs that reach non-public addresses are refused (SSRF), in every spelling."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts.webhooks.url_guard import WebhookUrlRefused, webhook_url_check

REFUSED = [
    # deprecated IPv6 site-local (RFC 3879): still routed inside some networks, never public
    "http://[fec0::1]/",
    "http://[feff:ffff::1]/",
    # IETF protocol assignments 192.0.0.0/24 (not globally reachable, per the IANA registry)
    "http://192.0.0.8/",
    "http://192.0.0.170/",
    # already refused before the review: the other spellings of internal addresses
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
]


@override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False)
@pytest.mark.parametrize("url", REFUSED)
def test_non_public_addresses_are_refused(url):
    with pytest.raises(WebhookUrlRefused):
        webhook_url_check(url)


@override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False)
@pytest.mark.parametrize("url", ["http://1.1.1.1/", "http://[2606:4700:4700::1111]/", "http://192.0.0.9/"])
def test_public_addresses_pass(url):
    assert webhook_url_check(url)
