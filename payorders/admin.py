"""Pay orders in the back office: read-only (services are the only writers); actions call services.

"Reconcile chain receipts" is a read: for the organizations and chains of the selected orders, the
chain provider's transfers to their deposit addresses (from the earliest selected order's first
block to the head) against settled orders (`payorders.services.reconciliation`), as a report page.
"""

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from core.errors import CofferError

from core.admin import ReadOnlyModelAdmin, ReadOnlyTabularInline

from payorders.models import DepositAddress, PayOrder, PayOrderPayment, PayOrderQuote, PayOrderStatusChange, Refund, XpubKey
from payorders.services.payments import payorder_refresh_confirmations, payorder_scan
from payorders.services.reconciliation import chain_reconcile
from payorders.services.settlement import payorder_settle


class StatusChangeInline(ReadOnlyTabularInline):
    model = PayOrderStatusChange
    fields = ["at", "from_status", "to_status", "cause", "actor_label"]


class PaymentInline(ReadOnlyTabularInline):
    model = PayOrderPayment
    fields = ["tx_hash", "log_index", "asset", "amount", "confirmations", "status", "source", "late", "detected_at"]


class RefundInline(ReadOnlyTabularInline):
    model = Refund
    fields = ["public_id", "kind", "status", "amount", "currency", "destination_address", "tx_hash", "ledger_transaction"]


@admin.register(PayOrder)
class PayOrderAdmin(ReadOnlyModelAdmin):
    list_display = ["public_id", "organization", "type", "status", "amount", "currency", "source_currency", "underpaid", "overpaid", "late_payment", "created_at"]
    list_filter = ["status", "type", "underpaid", "overpaid", "late_payment", "chain"]
    search_fields = ["public_id", "description", "deposit_address__address", "payments__tx_hash"]
    list_select_related = ["organization"]
    readonly_fields = [f.name for f in PayOrder._meta.fields]
    inlines = [StatusChangeInline, PaymentInline, RefundInline]
    actions = ["settle_now", "refresh_confirmations", "scan_address", "reconcile_chain"]

    @admin.action(description="Reconcile chain receipts (the selected orders' organizations and chains)")
    def reconcile_chain(self, request, queryset):
        starts: dict[tuple, int] = {}
        organizations = {}
        for order in queryset.exclude(chain="").select_related("organization"):
            key = (order.organization_id, order.chain)
            starts[key] = min(starts.get(key, order.scan_from_block), order.scan_from_block)
            organizations[order.organization_id] = order.organization
        reports = []
        for (organization_id, chain), start in sorted(starts.items()):
            try:
                report = chain_reconcile(chain=chain, from_block=start, organization=organizations[organization_id])
            except CofferError as exc:
                self.message_user(request, f"{organizations[organization_id]} on {chain}: {exc.message}", messages.ERROR)
                continue
            reports.append({"organization": organizations[organization_id], "report": report})
        return TemplateResponse(request, "admin/payorders/payorder/chain_reconciliation.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Chain reconciliation", "reports": reports,
        })

    @admin.action(description="Settle now (completed, unsettled orders)")
    def settle_now(self, request, queryset):
        for order in queryset:
            payorder_settle(order_id=order.pk)
        self.message_user(request, "Settlement run for the selected orders.", messages.SUCCESS)

    @admin.action(description="Refresh confirmations")
    def refresh_confirmations(self, request, queryset):
        for order in queryset:
            payorder_refresh_confirmations(order_id=order.pk)
        self.message_user(request, "Confirmations refreshed.", messages.SUCCESS)

    @admin.action(description="Scan the deposit address for payments")
    def scan_address(self, request, queryset):
        for order in queryset:
            payorder_scan(order_id=order.pk)
        self.message_user(request, "Addresses scanned.", messages.SUCCESS)


@admin.register(PayOrderPayment)
class PayOrderPaymentAdmin(ReadOnlyModelAdmin):
    list_display = ["tx_hash", "log_index", "pay_order", "asset", "amount", "status", "confirmations", "late", "detected_at"]
    list_filter = ["status", "chain", "asset", "late", "source"]
    search_fields = ["tx_hash", "to_address", "from_address"]
    list_select_related = ["pay_order"]


@admin.register(PayOrderQuote)
class PayOrderQuoteAdmin(ReadOnlyModelAdmin):
    list_display = ["__str__", "pay_order", "source_currency", "chain", "amount", "rate", "expires_at"]
    list_select_related = ["pay_order"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyModelAdmin):
    list_display = ["public_id", "pay_order", "kind", "status", "amount", "currency", "destination_address", "tx_hash", "created_at"]
    list_filter = ["status", "kind", "chain"]
    list_select_related = ["pay_order"]


@admin.register(XpubKey)
class XpubKeyAdmin(ReadOnlyModelAdmin):
    list_display = ["organization", "chain", "network", "next_index", "gap_limit", "constrained_since", "is_active", "created_at"]
    list_filter = ["chain", "is_active"]
    list_select_related = ["organization"]


@admin.register(DepositAddress)
class DepositAddressAdmin(ReadOnlyModelAdmin):
    list_display = ["address", "chain", "index", "xpub_key", "released_at", "created_at"]
    search_fields = ["address"]
    list_select_related = ["xpub_key"]
