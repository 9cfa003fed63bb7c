"""Postings as rows: `ledger_posting` replaces the JSON list `Transaction.operations`.

Creates the table, copies every transaction's stored operations into it (one row per
operation, in order; amounts from their decimal strings, platform sides resolved to the shard
row the posting used, as the engine stored them), and makes the rows append-only on
PostgreSQL like entries. `0006` then drops the JSON column. Backwards, the JSON is rebuilt
from the rows. Tested on a copy with history: tests/ledger/test_migration_postings.py.
"""

from decimal import Decimal

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 2000
ISSUANCE = "issuance"

PG_FORWARD = """
CREATE TRIGGER ledger_posting_append_only
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""
PG_BACKWARD = "DROP TRIGGER IF EXISTS ledger_posting_append_only ON ledger_posting;"


def _shards() -> int:
    return max(1, int(getattr(settings, "LEDGER_HOT_ACCOUNT_SHARDS", 16)))


class _Shards:
    """The platform shard a side named by purpose used: `counterparty % N` of the counterparty
    wallet's asset (only for operations stored before wallet ids were resolved)."""

    def __init__(self, Wallet):
        self.Wallet, self.n = Wallet, _shards()

    def __call__(self, purpose: str, counterparty_id: int) -> int:
        W = self.Wallet
        asset_id = W.objects.values_list("asset_id", flat=True).get(pk=counterparty_id)
        found = W.objects.filter(asset_id=asset_id, purpose=purpose, shard=counterparty_id % self.n,
                                 customer__isnull=True, organization__isnull=True).values_list("pk", flat=True).first()
        if found is None:
            kind = "issuance" if purpose == ISSUANCE else "system"
            W.objects.bulk_create([W(asset_id=asset_id, kind=kind, purpose=purpose, shard=s, label=f"platform {purpose} #{s}")
                                   for s in range(self.n)], ignore_conflicts=True)
            found = W.objects.filter(asset_id=asset_id, purpose=purpose, shard=counterparty_id % self.n,
                                     customer__isnull=True, organization__isnull=True).values_list("pk", flat=True).get()
        return found


def posting_fields(item: dict, shard_of) -> dict:
    """One stored operation (the JSON the engine wrote) as the fields of a posting row."""
    kind = item["type"]
    if kind == "issue":
        source_purpose, destination_purpose = ISSUANCE, ""
        destination = item.get("destination_wallet_id", item.get("wallet_id"))
        source = item.get("source_wallet_id") or shard_of(ISSUANCE, destination)
    elif kind == "redeem":
        source_purpose, destination_purpose = "", ISSUANCE
        source = item.get("source_wallet_id", item.get("wallet_id"))
        destination = item.get("destination_wallet_id") or shard_of(ISSUANCE, source)
    else:
        source_purpose, destination_purpose = item.get("source_platform", ""), item.get("destination_platform", "")
        source, destination = item.get("source_wallet_id"), item.get("destination_wallet_id")
        if source is None:
            source = shard_of(source_purpose, destination)
        if destination is None:
            destination = shard_of(destination_purpose, source)
    return {"kind": kind, "source_wallet_id": source, "source_purpose": source_purpose, "destination_wallet_id": destination,
            "destination_purpose": destination_purpose, "amount": Decimal(str(item["amount"]))}


def operations_to_postings(apps, schema_editor):
    Transaction, Posting, Wallet = (apps.get_model("ledger", m) for m in ("Transaction", "Posting", "Wallet"))
    shard_of = _Shards(Wallet)
    assets = dict(Wallet.objects.values_list("pk", "asset_id"))
    batch = []
    for tx_id, operations in Transaction.objects.order_by("pk").values_list("pk", "operations").iterator(chunk_size=BATCH):
        for index, item in enumerate(operations or []):
            fields = posting_fields(item, shard_of)
            source = fields["source_wallet_id"]
            asset_id = assets.get(source) or Wallet.objects.values_list("asset_id", flat=True).get(pk=source)
            batch.append(Posting(transaction_id=tx_id, index=index, asset_id=asset_id, **fields))
        if len(batch) >= BATCH:
            Posting.objects.bulk_create(batch)
            batch = []
    Posting.objects.bulk_create(batch)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)


def postings_to_operations(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)
    Transaction, Posting = apps.get_model("ledger", "Transaction"), apps.get_model("ledger", "Posting")
    stored: dict[int, list] = {}
    for p in Posting.objects.order_by("transaction_id", "index").iterator(chunk_size=BATCH):
        item = {"amount": str(p.amount), "type": p.kind}
        if p.kind == "issue":
            item["wallet_id"] = p.destination_wallet_id
        elif p.kind == "redeem":
            item["wallet_id"] = p.source_wallet_id
        else:
            if p.source_purpose:
                item["source_platform"] = p.source_purpose
            if p.destination_purpose:
                item["destination_platform"] = p.destination_purpose
        item["source_wallet_id"], item["destination_wallet_id"] = p.source_wallet_id, p.destination_wallet_id
        stored.setdefault(p.transaction_id, []).append(item)
    for tx_id, operations in stored.items():
        Transaction.objects.filter(pk=tx_id).update(operations=operations)


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0004_usage_counters'),
    ]

    operations = [
        migrations.CreateModel(
            name='Posting',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveSmallIntegerField()),
                ('kind', models.CharField(choices=[('issue', 'Issue'), ('redeem', 'Redeem'), ('transfer', 'Transfer')], max_length=8)),
                ('source_purpose', models.CharField(blank=True, choices=[('', '-'), ('issuance', 'Issuance'), ('fee', 'Fees'), ('fx', 'FX'), ('settlement', 'Settlement')], default='', max_length=16)),
                ('destination_purpose', models.CharField(blank=True, choices=[('', '-'), ('issuance', 'Issuance'), ('fee', 'Fees'), ('fx', 'FX'), ('settlement', 'Settlement')], default='', max_length=16)),
                ('amount', models.DecimalField(decimal_places=18, max_digits=38)),
                ('asset', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ledger.asset')),
                ('destination_wallet', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ledger.wallet')),
                ('source_wallet', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ledger.wallet')),
                ('transaction', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='postings', to='ledger.transaction')),
            ],
            options={
                'ordering': ['transaction', 'index'],
                'indexes': [models.Index(fields=['source_wallet', 'transaction'], name='posting_source_wallet'), models.Index(fields=['destination_wallet', 'transaction'], name='posting_destination_wallet')],
                'constraints': [models.UniqueConstraint(fields=('transaction', 'index'), name='posting_transaction_index'), models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='posting_amount_positive')],
            },
        ),
        migrations.RunPython(operations_to_postings, postings_to_operations),
    ]
