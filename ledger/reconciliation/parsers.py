"""Reading external statements: a CSV of our own columns, or an ISO 20022 camt.053 file.

Invariants:
* The result is a `ParsedStatement`: lines with a date, a SIGNED amount in the wallet's asset
  (positive = money into the account, a credit; negative = out), currency, reference and
  description; and, when the file states them, its period and opening/closing balances.
* Amounts are exact: a plain decimal with at most the asset's exponent in decimals
  (`core.money.parse_amount`), never a float. Anything malformed is a 400 VALIDATION_ERROR that
  names the CSV line and column, or the camt.053 entry (its number and NtryRef) and element;
  every problem found is listed in `details.errors` (the first 50).
* XML is parsed with lxml's parser hardened against hostile files: no DTD, no entity
  expansion, no network; a document declaring a DOCTYPE is refused. Only booked camt.053 entries
  (status BOOK) are statement lines; pending and information entries are skipped.

CSV (UTF-8, comma separated, a header row; column names are case-insensitive, order is free):
  date         YYYY-MM-DD (or an ISO 8601 date-time: its date is used)
  amount       "125.00", signed ("-40.00" = money out) unless a `direction` column is present,
               in which case it is unsigned
  currency     the wallet's asset code (USD)
  reference    optional: matched against ledger transaction references
  description  optional
  direction    optional: credit|debit (also CRDT/DBIT, C/D, in/out)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal

from core.errors import ValidationFailed
from core.money import parse_amount

MAX_ERRORS = 50
_ZERO = re.compile(r"0+(?:\.0+)?")
REQUIRED_COLUMNS = ("date", "amount", "currency")
OPTIONAL_COLUMNS = ("reference", "description", "direction")
DIRECTIONS = {"credit": 1, "crdt": 1, "c": 1, "cr": 1, "in": 1, "debit": -1, "dbit": -1, "d": -1, "dr": -1, "out": -1}
CAMT_NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053."


@dataclass
class StatementLine:
    line_number: int
    date: dt.date
    amount: Decimal  # signed: + in, - out
    currency: str
    reference: str = ""
    description: str = ""


@dataclass
class ParsedStatement:
    format: str
    lines: list[StatementLine] = field(default_factory=list)
    period_start: dt.date | dt.datetime | None = None
    period_end: dt.date | dt.datetime | None = None
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None
    statement_id: str = ""


class _Errors:
    def __init__(self, what: str):
        self.what = what
        self.items: list[dict] = []

    def add(self, message: str, **where) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({**where, "message": message})

    def raise_any(self) -> None:
        if not self.items:
            return
        first = self.items[0]
        where = ", ".join(f"{k} {v}" for k, v in first.items() if k != "message")
        more = f" ({len(self.items)} problems; see details.errors)" if len(self.items) > 1 else ""
        raise ValidationFailed(f"{self.what}: {where}: {first['message']}{more}", details={**first, "errors": self.items})


def _amount(text: str, *, exponent: int, errors: _Errors, signed: bool, allow_zero: bool = False, **where) -> Decimal | None:
    raw = (text or "").strip()
    sign = 1
    if signed and raw[:1] in ("+", "-"):
        sign, raw = (-1 if raw[0] == "-" else 1), raw[1:]
    if allow_zero and _ZERO.fullmatch(raw):
        return Decimal(0)
    try:
        return sign * parse_amount(raw, exponent=exponent, field="amount")
    except ValidationFailed as exc:
        errors.add(exc.message.removeprefix("amount: "), **where)
        return None


def _date(text: str) -> dt.date:
    raw = (text or "").strip()
    if len(raw) == 10:
        return dt.date.fromisoformat(raw)
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).date()


# --- CSV -------------------------------------------------------------------------------------------

def parse_csv(data: bytes, *, currency: str, exponent: int) -> ParsedStatement:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("file: the CSV is not UTF-8.", details={"fields": {"file": [f"Not UTF-8 (byte {exc.start})."]}}) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors = _Errors("CSV")
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValidationFailed(f"CSV: line 1: {exc}", details={"line": 1, "field": "header", "message": str(exc)}) from None
    if not header:
        raise ValidationFailed("CSV: the file is empty: a header row is required.", details={"line": 1, "field": "header"})
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [name for name in columns if name not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if missing or unknown:
        message = (f"missing column(s) {', '.join(missing)}" if missing else "") + ("; " if missing and unknown else "") + (
            f"unknown column(s) {', '.join(unknown)}" if unknown else "")
        raise ValidationFailed(f"CSV: line 1: {message}.", details={
            "line": 1, "field": "header", "missing_columns": missing, "unknown_columns": unknown,
            "columns": [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]})
    has_direction = "direction" in columns
    parsed = ParsedStatement(format="csv")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.add(str(exc), line=reader.line_num, field="row")
            break
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.add(f"{len(row)} fields, the header has {len(header)}.", line=number, field="row")
            continue
        cell = {name: row[i] for name, i in columns.items()}
        try:
            day = _date(cell["date"])
        except ValueError:
            errors.add("Not an ISO 8601 date (YYYY-MM-DD).", line=number, field="date")
            day = None
        sign = 1
        if has_direction:
            sign = DIRECTIONS.get(cell["direction"].strip().lower(), 0)
            if not sign:
                errors.add("credit or debit.", line=number, field="direction")
        amount = _amount(cell["amount"], exponent=exponent, errors=errors, signed=not has_direction, line=number, field="amount")
        code = cell["currency"].strip().upper()
        if code != currency:
            errors.add(f"{code or 'empty'}: the wallet holds {currency}.", line=number, field="currency")
        reference, description = cell.get("reference", "").strip(), cell.get("description", "").strip()
        if len(reference) > 200:
            errors.add("At most 200 characters.", line=number, field="reference")
        if day is not None and amount is not None and sign:
            parsed.lines.append(StatementLine(number, day, sign * amount, code, reference[:200], description[:500]))
    errors.raise_any()
    return parsed


# --- camt.053 --------------------------------------------------------------------------------------

def _xml_root(data: bytes):
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data.lstrip(b" \t\r\n"), parser=parser)  # blank lines before the declaration: tolerated
    except etree.XMLSyntaxError as exc:
        raise ValidationFailed(f"camt.053: not well-formed XML: {exc}", details={"fields": {"file": [str(exc)]}}) from None
    if root.getroottree().docinfo.doctype:
        raise ValidationFailed("camt.053: a document type declaration (DOCTYPE) is not allowed.", details={"fields": {"file": ["DOCTYPE refused."]}})
    namespace = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "Document" or not namespace.startswith(CAMT_NAMESPACE_PREFIX):
        raise ValidationFailed(
            "camt.053: the root must be a camt.053 Document (namespace urn:iso:std:iso:20022:tech:xsd:camt.053.001.xx).",
            details={"fields": {"file": ["Not a camt.053 document."]}, "namespace": namespace},
        )
    return root, {"c": namespace}


def _text(node, path: str, ns) -> str:
    found = node.find(path, ns) if node is not None else None
    return (found.text or "").strip() if found is not None and found.text else ""


def _when(node, path: str, ns) -> dt.date | dt.datetime | None:
    """A camt date element: Dt (a date) or DtTm (a date-time)."""
    raw = _text(node, f"{path}/c:Dt", ns) or _text(node, f"{path}/c:DtTm", ns)
    if not raw:
        return None
    if len(raw) == 10:
        return dt.date.fromisoformat(raw)
    moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _signed(node, ns, *, exponent: int, currency: str, errors: _Errors, allow_zero: bool = False, **where) -> Decimal | None:
    amount_node = node.find("c:Amt", ns)
    if amount_node is None:
        errors.add("Amt is missing.", **where, field="Amt")
        return None
    amount = _amount(amount_node.text or "", exponent=exponent, errors=errors, signed=False, allow_zero=allow_zero, **where, field="Amt")
    code = (amount_node.get("Ccy") or "").strip().upper()
    if code != currency:
        errors.add(f"Ccy {code or 'missing'}: the wallet holds {currency}.", **where, field="Amt/@Ccy")
    indicator = _text(node, "c:CdtDbtInd", ns)
    if indicator not in ("CRDT", "DBIT"):
        errors.add("CdtDbtInd must be CRDT or DBIT.", **where, field="CdtDbtInd")
        return None
    return None if amount is None else (amount if indicator == "CRDT" else -amount)


def parse_camt053(data: bytes, *, currency: str, exponent: int) -> ParsedStatement:
    root, ns = _xml_root(data)
    statements = root.findall("c:BkToCstmrStmt/c:Stmt", ns)
    if len(statements) != 1:
        raise ValidationFailed(f"camt.053: exactly one Stmt per file, found {len(statements)}.", details={"fields": {"file": ["One Stmt per file."]}})
    stmt = statements[0]
    errors = _Errors("camt.053")
    parsed = ParsedStatement(format="camt053", statement_id=_text(stmt, "c:Id", ns)[:140])
    account_currency = _text(stmt, "c:Acct/c:Ccy", ns).upper()
    if account_currency and account_currency != currency:
        errors.add(f"Acct/Ccy {account_currency}: the wallet holds {currency}.", field="Acct/Ccy")
    for when, name in ((_text(stmt, "c:FrToDt/c:FrDtTm", ns), "period_start"), (_text(stmt, "c:FrToDt/c:ToDtTm", ns), "period_end")):
        if when:
            try:
                moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
                setattr(parsed, name, moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc))
            except ValueError:
                errors.add("Not an ISO 8601 date-time.", field=f"FrToDt/{'FrDtTm' if name == 'period_start' else 'ToDtTm'}")
    for index, balance in enumerate(stmt.findall("c:Bal", ns), start=1):
        code = _text(balance, "c:Tp/c:CdOrPrtry/c:Cd", ns)
        if code not in ("OPBD", "CLBD"):
            continue
        value = _signed(balance, ns, exponent=exponent, currency=currency, errors=errors, allow_zero=True, balance=f"{index} ({code})")
        if code == "OPBD":
            parsed.opening_balance = value
        else:
            parsed.closing_balance = value
            try:
                parsed.period_end = parsed.period_end or _when(balance, "c:Dt", ns)
            except ValueError:
                errors.add("Not an ISO 8601 date.", balance=f"{index} ({code})", field="Dt")
    for number, entry in enumerate(stmt.findall("c:Ntry", ns), start=1):
        where = {"entry": number, "entry_ref": _text(entry, "c:NtryRef", ns) or None}
        status = _text(entry, "c:Sts/c:Cd", ns) or _text(entry, "c:Sts", ns)
        if status and status != "BOOK":
            continue
        amount = _signed(entry, ns, exponent=exponent, currency=currency, errors=errors, **where)
        if _text(entry, "c:RvslInd", ns).lower() == "true" and amount is not None:
            amount = -amount  # a reversal entry undoes the opposite direction
        try:
            day = _when(entry, "c:BookgDt", ns) or _when(entry, "c:ValDt", ns)
        except ValueError:
            errors.add("Not an ISO 8601 date.", **where, field="BookgDt")
            continue
        if day is None:
            errors.add("BookgDt (or ValDt) is missing.", **where, field="BookgDt")
            continue
        details = entry.find("c:NtryDtls/c:TxDtls", ns)
        references = [_text(details, f"c:Refs/c:{name}", ns) for name in ("EndToEndId", "InstrId", "PmtInfId")] if details is not None else []
        references += [_text(entry, "c:AcctSvcrRef", ns), _text(entry, "c:NtryRef", ns)]
        reference = next((r for r in references if r and r.upper() != "NOTPROVIDED"), "")
        description = (_text(details, "c:RmtInf/c:Ustrd", ns) if details is not None else "") or _text(entry, "c:AddtlNtryInf", ns)
        if amount is not None:
            day = day.astimezone(dt.timezone.utc).date() if isinstance(day, dt.datetime) else day
            parsed.lines.append(StatementLine(number, day, amount, currency, reference[:200], description[:500]))
    errors.raise_any()
    return parsed


def statement_parse(data: bytes, *, fmt: str | None, currency: str, exponent: int) -> ParsedStatement:
    """`fmt` csv | camt053, or None: XML (a first non-blank `<`) is camt.053, anything else CSV."""
    if fmt is None:
        fmt = "camt053" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<" else "csv"
    if fmt == "camt053":
        return parse_camt053(data, currency=currency, exponent=exponent)
    return parse_csv(data, currency=currency, exponent=exponent)


def balance_parse(text: str, *, exponent: int, field: str) -> Decimal:
    """A signed balance (zero allowed), e.g. a CSV statement's closing balance given as a form field."""
    errors = _Errors(field)
    value = _amount(text, exponent=exponent, errors=errors, signed=True, allow_zero=True)
    if value is None:
        message = errors.items[0]["message"]
        raise ValidationFailed(f"{field}: {message}", details={"fields": {field: [message]}})
    return value
