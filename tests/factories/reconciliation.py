"""Reconciliation fixtures and helpers (imported from `tests.factories.reconciliation` by the tests): two organizations with keys (the ledger API's), a USD system wallet
standing for Alpha's bank account, and helpers that build CSV and camt.053 files."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from ledger.models import Wallet
from ledger.posting import Issue, Redeem, ledger_post
from tests.factories.ledger_api import client_a, client_b, org, other_org, system_wallet, usd  # noqa: F401

CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def today() -> dt.date:
    return timezone.now().astimezone(dt.timezone.utc).date()


def post(wallet, organization, *ops, reference: str = "", description: str = ""):
    """A completed organization transaction on `wallet`: ("in", "300.00") issues, ("out", ...) redeems."""
    operations = [Issue(wallet=wallet, amount=Decimal(a)) if d == "in" else Redeem(wallet=wallet, amount=Decimal(a)) for d, a in ops]
    return ledger_post(type="ledger", operations=operations, organization=organization, reference=reference,
                       description=description).raise_for_error()


def csv_file(rows: list[str], *, header: str = "date,amount,currency,reference,description", name: str = "bank.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, ("\n".join([header, *rows]) + "\n").encode(), content_type="text/csv")


def camt_entry(amount: str, indicator: str, day: dt.date, *, ref: str = "", end_to_end: str = "", status: str = "BOOK", text: str = "") -> str:
    details = ""
    if end_to_end or text:
        details = (f"<NtryDtls><TxDtls><Refs><EndToEndId>{end_to_end or 'NOTPROVIDED'}</EndToEndId></Refs>"
                   f"<RmtInf><Ustrd>{text}</Ustrd></RmtInf></TxDtls></NtryDtls>")
    return (f"<Ntry><NtryRef>{ref}</NtryRef><Amt Ccy=\"USD\">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>"
            f"<Sts><Cd>{status}</Cd></Sts><BookgDt><Dt>{day.isoformat()}</Dt></BookgDt>{details}</Ntry>")


def camt_file(entries: list[str], *, start: dt.date, end: dt.date, opening: str | None = "0.00", closing: str | None = None,
              name: str = "statement.xml") -> SimpleUploadedFile:
    balances = ""
    for code, value in (("OPBD", opening), ("CLBD", closing)):
        if value is not None:
            indicator = "DBIT" if value.startswith("-") else "CRDT"
            day = start if code == "OPBD" else end
            balances += (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"USD\">{value.lstrip('-')}</Amt>"
                         f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")
    xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Document xmlns=\"{CAMT_NS}\"><BkToCstmrStmt>"
           f"<GrpHdr><MsgId>M-{uuid.uuid4().hex[:8]}</MsgId><CreDtTm>{end.isoformat()}T23:00:00</CreDtTm></GrpHdr>"
           f"<Stmt><Id>STMT-1</Id><FrToDt><FrDtTm>{start.isoformat()}T00:00:00Z</FrDtTm><ToDtTm>{end.isoformat()}T23:59:59Z</ToDtTm></FrToDt>"
           f"<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>USD</Ccy></Acct>{balances}{''.join(entries)}</Stmt>"
           f"</BkToCstmrStmt></Document>")
    return SimpleUploadedFile(name, xml.encode(), content_type="application/xml")


def upload(client, wallet, file, key: str | None = None, **fields):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    body = {"wallet_id": wallet.pk if isinstance(wallet, Wallet) else wallet, "file": file, **fields}
    return client.post("/api/v1/reconciliations", body, format="multipart", **headers)


@pytest.fixture
def bank(org, usd):  # noqa: F811
    """Alpha's system wallet standing for its bank account."""
    return system_wallet(org, usd, label="bank account")
