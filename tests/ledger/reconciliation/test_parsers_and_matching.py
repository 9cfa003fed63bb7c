"""The statement readers and the matcher on their own (no database): camt.053 versions and
details, CSV variants, and the matching rules' order and tie-breaks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.errors import ValidationFailed
from ledger.reconciliation.matching import LedgerItem, match
from ledger.reconciliation.parsers import StatementLine, parse_camt053, parse_csv, statement_parse

V02 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def _camt(body: str, ns: str = V02) -> bytes:
    return f'<?xml version="1.0"?><Document xmlns="{ns}"><BkToCstmrStmt><Stmt><Id>S-9</Id>{body}</Stmt></BkToCstmrStmt></Document>'.encode()


def test_camt_053_001_02_status_text_reversals_and_references():
    data = _camt(
        '<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-05-31</Dt></Dt></Bal>'
        '<Ntry><Amt Ccy="EUR">10.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><DtTm>2026-05-02T23:30:00-02:00</DtTm></BookgDt>'
        '<AcctSvcrRef>BANK-1</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs></TxDtls></NtryDtls>'
        '<AddtlNtryInf>Card batch</AddtlNtryInf></Ntry>'
        '<Ntry><Amt Ccy="EUR">4</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts>BOOK</Sts><BookgDt><Dt>2026-05-03</Dt></BookgDt></Ntry>'
        '<Ntry><Amt Ccy="EUR">99</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>INFO</Sts><BookgDt><Dt>2026-05-03</Dt></BookgDt></Ntry>'
    )
    parsed = parse_camt053(data, currency="EUR", exponent=2)
    first, second = parsed.lines
    assert (first.line_number, first.date, first.amount, first.reference, first.description) == (1, dt.date(2026, 5, 3), Decimal("10.50"), "BANK-1", "Card batch")
    assert second.amount == Decimal("4")  # a reversed debit gives money back
    assert (parsed.statement_id, parsed.closing_balance, parsed.period_end) == ("S-9", Decimal(0), dt.date(2026, 5, 31))
    assert statement_parse(b"\n  " + data, fmt=None, currency="EUR", exponent=2).format == "camt053"


@pytest.mark.parametrize("entry, field", [
    ('<Amt Ccy="EUR">1.005</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-05-03</Dt></BookgDt>', "Amt"),
    ('<Amt Ccy="USD">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-05-03</Dt></BookgDt>', "Amt/@Ccy"),
    ('<Amt Ccy="EUR">1.00</Amt><CdtDbtInd>UP</CdtDbtInd><BookgDt><Dt>2026-05-03</Dt></BookgDt>', "CdtDbtInd"),
    ('<Amt Ccy="EUR">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>', "BookgDt"),
    ('<Amt Ccy="EUR">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-13-03</Dt></BookgDt>', "BookgDt"),
    ('<CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-05-03</Dt></BookgDt>', "Amt"),
])
def test_camt_entry_problems_name_entry_and_field(entry, field):
    with pytest.raises(ValidationFailed) as caught:
        parse_camt053(_camt(f"<Ntry><NtryRef>R-7</NtryRef>{entry}</Ntry>"), currency="EUR", exponent=2)
    details = caught.value.details
    assert (details["entry"], details["entry_ref"], details["field"]) == (1, "R-7", field)


def test_csv_bom_quoting_and_blank_lines():
    data = '\ufeffDate,AMOUNT,currency,description,reference\r\n2026-05-01,"-1,000.00",USD,x,y\r\n\r\n2026-05-02T10:00:00Z,+2.5,usd,"a, b",\r\n'
    with pytest.raises(ValidationFailed) as caught:  # a thousands separator is not a decimal
        parse_csv(data.encode(), currency="USD", exponent=2)
    assert (caught.value.details["line"], caught.value.details["field"]) == (2, "amount")
    parsed = parse_csv(data.replace('"-1,000.00"', "-1000.00").encode(), currency="USD", exponent=2)
    assert [(line.line_number, line.date, line.amount, line.description) for line in parsed.lines] == [
        (2, dt.date(2026, 5, 1), Decimal("-1000.00"), "x"), (4, dt.date(2026, 5, 2), Decimal("2.5"), "a, b")]
    with pytest.raises(ValidationFailed):
        parse_csv(b"\xff\xfe", currency="USD", exponent=2)


def _line(n, amount, day, reference=""):
    return StatementLine(n, day, Decimal(amount), "USD", reference)


def _item(i, amount, day, reference=""):
    return LedgerItem(i, Decimal(amount), dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc), reference)


def test_matching_prefers_reference_then_the_closest_date_and_uses_a_transaction_once():
    d = dt.date(2026, 5, 10)
    items = [_item(1, "10", d - dt.timedelta(days=2)), _item(2, "10", d + dt.timedelta(days=1)), _item(3, "10", d, reference="R")]
    lines = [_line(1, "10", d), _line(2, "10", d, reference="R"), _line(3, "10", d), _line(4, "10", d)]
    result = match(lines, items, window_days=3)
    assert [(line.line_number, item.transaction_id, how) for line, item, how in result.pairs] == [
        (2, 3, "reference"), (1, 2, "amount_date"), (3, 1, "amount_date")]
    assert [line.line_number for line in result.unmatched_lines] == [4] and result.unmatched_items == []
    tight = match([_line(1, "10", d)], [_item(1, "10", d + dt.timedelta(days=1))], window_days=0)
    assert tight.pairs == [] and [i.transaction_id for i in tight.unmatched_items] == [1]
    opposite = match([_line(1, "-10", d)], [_item(1, "10", d)], window_days=3)  # money out never matches money in
    assert opposite.pairs == []
