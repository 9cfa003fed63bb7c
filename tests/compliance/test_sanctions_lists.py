"""Sanctions lists (issue 14 item 10): OFAC SDN and OpenSanctions targets.simple.csv imports (the
samples in tests/compliance/samples), malformed files refused whole, full lists deactivating
what they no longer hold, the scheduled re-import from a file path or URL, re-screening of
customers and payout beneficiaries, the whitelist of cleared false positives, and the admin
home's warning while the sanctions rule screens against an empty list. PostgreSQL."""

import http.server
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import reverse

from compliance.models import AuditEvent, RiskRule, SanctionsClearance, SanctionsEntry, ScreeningHit
from compliance.risk import sanctions_match
from compliance.sanctions import (
    sanctions_detect_format,
    sanctions_import,
    sanctions_list_needed,
    sanctions_rescreen,
    screening_hit_decide,
)
from compliance.tasks import sanctions_reimport, sanctions_rescreen_task
from core.errors import InvalidState, ValidationFailed
from tests.factories.accounts import CustomerFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

SAMPLES = Path(__file__).parent / "samples"
OFAC = (SAMPLES / "ofac_sdn.csv").read_text(encoding="utf-8")
OPENSANCTIONS = (SAMPLES / "opensanctions_targets.simple.csv").read_text(encoding="utf-8")


def entries(source: str) -> dict[str, SanctionsEntry]:
    return {e.list_id: e for e in SanctionsEntry.objects.filter(source=source)}


def test_formats_are_told_apart_by_their_first_line():
    assert sanctions_detect_format(OFAC) == "ofac_sdn"
    assert sanctions_detect_format(OPENSANCTIONS) == "opensanctions"
    assert sanctions_detect_format("name,aliases,list_id\nX,,1\n") == "coffer"
    with pytest.raises(ValidationFailed):
        sanctions_detect_format("hello world\n")


def test_ofac_sdn_import_reads_names_and_aka_aliases():
    result = sanctions_import(text=OFAC, actor=StaffUserFactory())
    assert (result.format, result.source, result.created, result.updated) == ("ofac_sdn", "OFAC SDN", 4, 0)
    listed = entries("OFAC SDN")
    assert set(listed) == {"1001", "1002", "1003", "1004"}
    assert listed["1001"].name == "NORTHWIND SHADOW TRADING LLC" and listed["1001"].aliases == ["NW SHADOW", "NORTHWIND ST"]
    assert listed["1002"].aliases == ["DRAGO, Ivan"] and listed["1004"].aliases == []
    event = AuditEvent.objects.get(action="sanctions.import")
    assert event.data["format"] == "ofac_sdn" and event.data["created"] == 4
    # Matching: word order, case and punctuation do not matter.
    found = sanctions_match("Ivan Petrov Dragomir")
    assert found is not None and found[0] == listed["1002"]


def test_opensanctions_import_reads_ids_names_and_aliases():
    result = sanctions_import(text=OPENSANCTIONS)
    assert (result.format, result.source, result.created) == ("opensanctions", "OpenSanctions", 3)
    listed = entries("OpenSanctions")
    assert listed["NK-drago-0001"].name == "Ivan Petrov Dragomir" and listed["NK-drago-0001"].aliases == ["Ivan Drago", "I. P. Dragomir"]
    assert listed["NK-lantern-0003"].aliases == []


def test_a_full_list_re_import_updates_and_deactivates_what_it_no_longer_holds():
    sanctions_import(text=OPENSANCTIONS)
    again = sanctions_import(text=OPENSANCTIONS)
    assert (again.created, again.updated, again.unchanged, again.deactivated, again.changed) == (0, 0, 3, 0, False)
    lines = OPENSANCTIONS.splitlines()
    shorter = "\n".join([lines[0], lines[1].replace("Ivan Drago;", "Ivan Drago;Vanya Drago;"), lines[3]]) + "\n"
    result = sanctions_import(text=shorter)
    assert (result.created, result.updated, result.unchanged, result.deactivated) == (0, 1, 1, 1)
    listed = entries("OpenSanctions")
    assert listed["NK-northwind-0002"].active is False and listed["NK-drago-0001"].aliases == ["Ivan Drago", "Vanya Drago", "I. P. Dragomir"]
    assert sanctions_match("Northwind Shadow Trading LLC") is None  # inactive entries do not match
    back = sanctions_import(text=OPENSANCTIONS)
    assert back.updated == 2 and entries("OpenSanctions")["NK-northwind-0002"].active is True


@pytest.mark.parametrize("text, message", [
    ('1001,"ACME"\n', "columns"),
    ('ABC,"ACME",-0-,"X",-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-\n' + OFAC, "is not a number"),
    ('1005,-0- ,-0-,"X",-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-\n', "name is empty"),
])
def test_a_malformed_ofac_file_imports_nothing(text, message):
    with pytest.raises(ValidationFailed, match=message):
        sanctions_import(text=text, format="ofac_sdn")
    assert not SanctionsEntry.objects.exists() and not AuditEvent.objects.filter(action="sanctions.import").exists()


@pytest.mark.parametrize("text, message", [
    ("id,name,aliases\nX-1,Someone,\n", "schema"),
    ("id,schema,name,aliases\n,Person,Someone,\n", "id is empty"),
    ("id,schema,name,aliases\nX-1,Person,,\n", "name is empty"),
    ("id,schema,name,aliases\n", "no entries"),
])
def test_a_malformed_opensanctions_file_imports_nothing(text, message):
    with pytest.raises(ValidationFailed, match=message):
        sanctions_import(text=text, format="opensanctions")
    assert not SanctionsEntry.objects.exists()


def test_an_empty_full_list_does_not_switch_the_list_off():
    sanctions_import(text=OPENSANCTIONS)
    with pytest.raises(ValidationFailed, match="no entries"):
        sanctions_import(text=OPENSANCTIONS.splitlines()[0] + "\n", format="opensanctions")
    assert SanctionsEntry.objects.filter(active=True).count() == 3


def _beneficiary(name: str) -> None:
    """A payout to `name` (a real withdrawal through the money path)."""
    from decimal import Decimal as D

    from ledger.models import Asset
    from ledger.posting import Issue, ledger_post
    from ledger.services import wallet_open
    from wallets.movements.withdrawals import withdrawal_create

    user = UserFactory()
    customer = CustomerFactory(user=user, kyc_level="verified", name="Plain Sender")
    wallet = wallet_open(asset=Asset.objects.get(code="USD", organization__isnull=True), customer=customer)
    ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=D("500"))], customer=customer).raise_for_error()
    with transaction.atomic():
        withdrawal_create(user=user, wallet_id=wallet.pk, amount="20.00", destination={"type": "IBAN", "iban": "DE89370400440532013000", "name": name})


def test_rescreening_opens_hits_for_customers_and_beneficiaries_once():
    RiskRule.objects.filter(kind="sanctions").update(active=False)  # let the payout through to be re-screened later
    dana = CustomerFactory(name="Dragomir Ivan Petrov")
    CustomerFactory(name="Harmless Person")
    _beneficiary("Northwind Shadow Trading")
    sanctions_import(text=OPENSANCTIONS)
    RiskRule.objects.filter(kind="sanctions").update(active=True)

    result = sanctions_rescreen()
    assert result.new_hits == 2
    customer_hit = ScreeningHit.objects.get(subject="customer")
    assert customer_hit.customer == dana and customer_hit.entry.list_id == "NK-drago-0001" and customer_hit.score >= Decimal(90)
    beneficiary_hit = ScreeningHit.objects.get(subject="beneficiary")
    assert beneficiary_hit.name == "Northwind Shadow Trading" and beneficiary_hit.entry.list_id == "NK-northwind-0002"
    assert sanctions_rescreen().new_hits == 0  # idempotent
    assert AuditEvent.objects.filter(action="sanctions.hit").count() == 2
    assert AuditEvent.objects.filter(action="sanctions.rescreened").count() == 2


def test_clearing_a_hit_whitelists_the_name_for_that_entry_only():
    CustomerFactory(name="Ivan Drago")
    sanctions_import(text=OPENSANCTIONS)
    sanctions_rescreen()
    hit = ScreeningHit.objects.get()
    officer = StaffUserFactory()
    with pytest.raises(ValidationFailed):
        screening_hit_decide(hit_id=hit.pk, actor=officer, reason=" ", clear=True)
    screening_hit_decide(hit_id=hit.pk, actor=officer, reason="Different person: born 1992, Canadian passport", clear=True)
    hit.refresh_from_db()
    assert hit.status == "cleared" and hit.decided_by == officer
    clearance = SanctionsClearance.objects.get()
    assert clearance.entry == hit.entry and clearance.name == "drago ivan" and clearance.cleared_by == officer
    assert sanctions_match("ivan  DRAGO.") is None  # the cleared name, however written
    assert sanctions_match("Ivan Petrov Dragomir") is not None  # other names still match
    with pytest.raises(InvalidState):
        screening_hit_decide(hit_id=hit.pk, actor=officer, reason="again", clear=False)
    assert sanctions_rescreen().new_hits == 0  # a cleared hit is not reopened


def test_the_empty_list_warning_follows_the_rule_and_the_list():
    RiskRule.objects.filter(kind="sanctions").update(active=True)
    SanctionsEntry.objects.all().delete()
    assert sanctions_list_needed()
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert b"sanctions-empty-warning" in client.get(reverse("admin:index")).content
    sanctions_import(text=OPENSANCTIONS)
    assert not sanctions_list_needed()
    assert b"sanctions-empty-warning" not in client.get(reverse("admin:index")).content
    SanctionsEntry.objects.update(active=False)
    assert sanctions_list_needed()
    RiskRule.objects.filter(kind="sanctions").update(active=False)
    assert not sanctions_list_needed()


def test_scheduled_reimport_from_a_file_path(settings, tmp_path):
    settings.SANCTIONS_SOURCE_LOCATION = ""
    assert "skipped" in sanctions_reimport()
    path = tmp_path / "sdn.csv"
    path.write_text(OFAC, encoding="utf-8")
    settings.SANCTIONS_SOURCE_LOCATION, settings.SANCTIONS_SOURCE_FORMAT, settings.SANCTIONS_SOURCE_NAME = str(path), "ofac_sdn", ""
    CustomerFactory(name="Lotte Kaspar")
    summary = sanctions_reimport()
    assert summary["created"] == 4 and summary["new_hits"] == 1
    assert sanctions_reimport() == {"created": 0, "updated": 0, "deactivated": 0}  # unchanged: no re-screen


def test_scheduled_reimport_from_a_url_and_a_failed_download(settings):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/targets.simple.csv":
                body = OPENSANCTIONS.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings.SANCTIONS_SOURCE_FORMAT, settings.SANCTIONS_SOURCE_NAME = "auto", "OpenSanctions default"
        settings.SANCTIONS_SOURCE_LOCATION = f"{base}/targets.simple.csv"
        assert sanctions_reimport()["created"] == 3
        assert SanctionsEntry.objects.filter(source="OpenSanctions default").count() == 3
        settings.SANCTIONS_SOURCE_LOCATION = f"{base}/missing.csv"
        failed = sanctions_reimport()
        assert "error" in failed and SanctionsEntry.objects.filter(active=True).count() == 3
        assert AuditEvent.objects.filter(action="sanctions.import_failed").count() == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_malformed_scheduled_file_changes_nothing_and_is_audited(settings, tmp_path):
    sanctions_import(text=OFAC)
    path = tmp_path / "sdn.csv"
    path.write_text('ABC,"BROKEN"\n', encoding="utf-8")
    settings.SANCTIONS_SOURCE_LOCATION, settings.SANCTIONS_SOURCE_FORMAT = str(path), "ofac_sdn"
    assert "error" in sanctions_reimport()
    assert SanctionsEntry.objects.filter(active=True).count() == 4
    assert AuditEvent.objects.get(action="sanctions.import_failed").data["location"] == str(path)


def test_the_admin_import_takes_each_format_and_re_screens_after_commit(django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:compliance_sanctionsentry_import")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url, {"file": SimpleUploadedFile("sdn.csv", OFAC.encode()), "format": "auto", "source": ""})
    assert response.status_code == 302 and SanctionsEntry.objects.filter(source="OFAC SDN").count() == 4
    assert [getattr(getattr(cb, "__self__", None), "name", None) for cb in callbacks].count(sanctions_rescreen_task.name) == 1
    bad = client.post(url, {"file": SimpleUploadedFile("x.csv", b'1001,"ACME"\n'), "format": "ofac_sdn", "source": ""})
    assert bad.status_code == 200 and b"columns" in bad.content
    os_response = client.post(url, {"file": SimpleUploadedFile("t.csv", OPENSANCTIONS.encode()), "format": "opensanctions", "source": ""})
    assert os_response.status_code == 302 and SanctionsEntry.objects.filter(source="OpenSanctions").count() == 3
