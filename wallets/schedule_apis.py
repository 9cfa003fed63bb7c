"""`/schedules`: recurring payments (`wallets.schedules`) for users (their own wallets) and
organizations (their wallets): create, read, pause, resume, cancel, occurrences.

Invariants:
* Create is `@idempotent` (Idempotency-Key required: a retried create must not make a second
  schedule that would pay twice) and MoneyThrottle'd; it takes `X-2FA-Code` for a schedule at or
  above the step-up threshold. Pause, resume and cancel are state changes that move nothing: a
  repeated one answers 409 INVALID_STATE. Organization keys need `ledger:write` to write.
* Someone else's schedule is a 404; errors in the SPEC 5 envelope; occurrences are paginated.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.identity.throttles import MoneyThrottle
from accounts.identity.twofactor import twofactor_code_from
from core.fields import RawAmountField
from core.idempotency import idempotent
from core.errors import field_error
from core.openapi import ORG_HEADER, PAGE_LIMIT, PAGE_OFFSET, error_example, page_of
from core.pagination import LimitOffsetPagination
from ledger.apis.common import IsOrganizationOrUser
from ledger.serializers import validated
from wallets.apis import IDEMPOTENCY_PARAMETER, TWO_FACTOR_PARAMETER
from wallets.models import Schedule, ScheduleOccurrence
from wallets.schedules import (
    Owner,
    occurrence_representation,
    occurrences_of,
    schedule_cancel,
    schedule_create,
    schedule_get,
    schedule_pause,
    schedule_representation,
    schedule_resume,
    schedule_update,
    schedules_visible,
)


def _owner(request) -> Owner:
    if request.organization is not None:
        return Owner(organization=request.organization, principal=request.user)
    return Owner(user=request.user)


class ScheduleCreateInput(serializers.Serializer):
    source_wallet_id = serializers.IntegerField(min_value=1, help_text="Your wallet each occurrence pays from.")
    destination_wallet_id = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                                     help_text="A customer wallet of the same asset (organizations: one of yours). Or `destination`.")
    destination = serializers.JSONField(
        required=False, allow_null=True,
        help_text='Users only, instead of destination_wallet_id: a beneficiary as POST /withdrawals takes it, '
                  '{"type": "IBAN", "iban", "name", "bank_name"?, "country"?} or {"type": "EXTERNAL", "name", "account", "network"?}.',
    )
    amount = RawAmountField(help_text='Paid on every occurrence: decimal string in major units, e.g. "250.00".')
    currency = serializers.CharField(max_length=16, help_text="The asset code of the source wallet.")
    rule = serializers.CharField(max_length=600, help_text=(
        "RFC 5545 RRULE (python-dateutil), evaluated in UTC from start_at, e.g. `FREQ=MONTHLY;BYMONTHDAY=1` or "
        "`RRULE:FREQ=WEEKLY;BYDAY=FR;COUNT=10`. At most hourly; no DTSTART/RDATE/EXDATE."), trim_whitespace=False)
    start_at = serializers.DateTimeField(help_text="ISO 8601; the rule's DTSTART. Not in the past.")
    end_at = serializers.DateTimeField(required=False, allow_null=True, help_text="No occurrence after this instant.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ScheduleUpdateInput(serializers.Serializer):
    amount = RawAmountField(required=False, help_text="Paid on every later occurrence. A user's larger amount at or above the step-up threshold needs X-2FA-Code.")
    rule = serializers.CharField(max_length=600, required=False, trim_whitespace=False,
                                 help_text="A new RRULE, evaluated from the schedule's start_at; the next instance is found again from now.")
    end_at = serializers.DateTimeField(required=False, allow_null=True, help_text="A new end (null: none). In the future.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ScheduleOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Schedule.Status.choices)
    source_wallet_id = serializers.IntegerField()
    destination_wallet_id = serializers.IntegerField(allow_null=True)
    destination = serializers.DictField(allow_null=True, help_text=(
        'The beneficiary, masked as a payout\'s: the IBAN as "DE89 **** **** **** 3000", the name as "J*** S****", '
        'an account as "****1234". Stored encrypted; never shown in full.'))
    amount = serializers.CharField()
    currency = serializers.CharField()
    rule = serializers.CharField()
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField(allow_null=True)
    description = serializers.CharField(allow_blank=True)
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="The next occurrence to pay; null unless active.")
    step_up_authorized = serializers.BooleanField(help_text="Created with a valid X-2FA-Code: its occurrences need no second factor.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    livemode = serializers.BooleanField(help_text="False for a test-mode schedule (a test key's, or any on the sandbox).")
    closed_at = serializers.DateTimeField(allow_null=True)


class ScheduleOccurrenceOutput(serializers.Serializer):
    id = serializers.IntegerField()
    schedule_id = serializers.IntegerField()
    scheduled_for = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=ScheduleOccurrence.Status.choices)
    attempts = serializers.IntegerField()
    transaction_id = serializers.IntegerField(allow_null=True, help_text="The last attempt's ledger transaction (a failed one is recorded too).")
    transaction_status = serializers.CharField(allow_null=True)
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    idempotency_key = serializers.CharField(help_text="Derived from (schedule, occurrence); attempt n posts with reference `<key>:<n>`.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


SCHEDULE_EXAMPLE = {
    "id": 7, "status": "active", "source_wallet_id": 42, "destination_wallet_id": None,
    "destination": {"type": "IBAN", "name": "J*** S****", "iban": "DE89 **** **** **** 3000", "country": "DE", "bank_name": "Deutsche Bank"},
    "amount": "850.00", "currency": "EUR", "rule": "FREQ=MONTHLY;BYMONTHDAY=1", "start_at": "2026-07-01T08:00:00Z", "end_at": None,
    "description": "Monthly rent payment", "next_run_at": "2026-07-01T08:00:00Z", "step_up_authorized": False, "livemode": True,
    "created_at": "2026-06-20T10:00:00Z", "updated_at": "2026-06-20T10:00:00Z", "closed_at": None,
}
OCCURRENCE_EXAMPLE = {
    "id": 31, "schedule_id": 7, "scheduled_for": "2026-08-01T08:00:00Z", "status": "retrying", "attempts": 1,
    "transaction_id": 1204, "transaction_status": "failed", "failure_code": "INSUFFICIENT_FUNDS",
    "failure_reason": "Operation 0: wallet 42 has insufficient available funds.", "next_attempt_at": "2026-08-01T09:00:10Z",
    "idempotency_key": "schedule:7:20260801T080000Z", "created_at": "2026-08-01T08:00:10Z", "updated_at": "2026-08-01T08:00:10Z",
}
NOT_FOUND = {404: OpenApiResponse(description="NOT_FOUND: no such schedule of yours", examples=[OpenApiExample(
    "Not yours", status_codes=["404"], value=error_example("NOT_FOUND", "Schedule 7 not found.", {"schedule_id": 7}))])}


class ScheduleListCreateApi(APIView):
    permission_classes = [IsOrganizationOrUser]

    def get_throttles(self):
        return [MoneyThrottle()] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(
        operation_id="schedules_list", tags=["money movement: schedules"], summary="Your recurring payments, newest first",
        parameters=[PAGE_LIMIT, PAGE_OFFSET, ORG_HEADER,
                    OpenApiParameter("status", str, enum=list(Schedule.Status.values), description="Only schedules in this state.")],
        responses={200: page_of(ScheduleOutput(many=True), "SchedulePage")},
        examples=[OpenApiExample("Page", response_only=True, value={"results": [SCHEDULE_EXAMPLE], "count": 1, "limit": 20, "offset": 0})],
    )
    def get(self, request):
        schedules = schedules_visible(owner=_owner(request))
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Schedule.Status.values:
                raise field_error("status", f"One of {', '.join(Schedule.Status.values)}.")
            schedules = schedules.filter(status=wanted)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(schedules, request, view=self)
        return paginator.get_paginated_response([schedule_representation(s) for s in page])

    @extend_schema(
        operation_id="schedules_create", tags=["money movement: schedules"], summary="Schedule a recurring payment (RRULE)",
        description=(
            "Each occurrence of `rule` (RFC 5545, from `start_at`, until `end_at` or the rule's own COUNT/UNTIL) pays `amount` "
            "through the money path exactly as POST /transfers (to `destination_wallet_id`) or POST /withdrawals (to "
            "`destination`, users only) would; organizations pay between their wallets as POST /transactions does. Limits, "
            "risk rules and usage apply to every occurrence. A schedule worth USD 5,000 (TWO_FACTOR_THRESHOLD, reference currency) or more needs "
            "`X-2FA-Code` here, once: it then authorizes its occurrences (each exactly `amount`). A failed occurrence "
            "(insufficient funds, limit) is retried after 1 h and 24 h; the owner is told of each failure (webhook "
            "`schedule.occurrence_failed`, or an e-mail). Idempotency-Key required."
        ),
        parameters=[IDEMPOTENCY_PARAMETER, TWO_FACTOR_PARAMETER, ORG_HEADER], request=ScheduleCreateInput,
        responses={
            201: ScheduleOutput,
            400: OpenApiResponse(description="VALIDATION_ERROR naming the field (`rule`: unparsable, more often than hourly, no occurrence), "
                                             "CURRENCY_MISMATCH, INVALID_IBAN, INVALID_BENEFICIARY, IDEMPOTENCY_KEY_REQUIRED", examples=[
                OpenApiExample("Too frequent", status_codes=["400"], value=error_example(
                    "VALIDATION_ERROR", "rule: FREQ=MINUTELY is more often than a payment may recur: at most hourly (FREQ=HOURLY or coarser).",
                    {"fields": {"rule": ["FREQ=MINUTELY is more often than a payment may recur: at most hourly (FREQ=HOURLY or coarser)."]}})),
                OpenApiExample("Not a rule", status_codes=["400"], value=error_example(
                    "VALIDATION_ERROR", "rule: Not a valid RRULE: unknown parameter name.", {"fields": {"rule": ["Not a valid RRULE: unknown parameter name."]}})),
            ]),
            403: OpenApiResponse(description="2FA_REQUIRED or 2FA_VERIFICATION_FAILED (amount at or above the step-up threshold)"),
            404: OpenApiResponse(description="NOT_FOUND: a wallet that is not yours"),
            409: OpenApiResponse(description="WALLET_INACTIVE (the source wallet), IDEMPOTENCY_KEY_IN_PROGRESS"),
            422: OpenApiResponse(description="IDEMPOTENCY_KEY_REUSED"),
        },
        examples=[
            OpenApiExample("Monthly rent to an IBAN", request_only=True, value={
                "source_wallet_id": 42, "amount": "850.00", "currency": "EUR", "rule": "FREQ=MONTHLY;BYMONTHDAY=1",
                "start_at": "2026-07-01T08:00:00Z", "description": "Monthly rent payment",
                "destination": {"type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Smith", "bank_name": "Deutsche Bank", "country": "DE"}}),
            OpenApiExample("Weekly allowance to a wallet, ten times", request_only=True, value={
                "source_wallet_id": 42, "destination_wallet_id": 43, "amount": "20.00", "currency": "USD",
                "rule": "RRULE:FREQ=WEEKLY;BYDAY=FR;COUNT=10", "start_at": "2026-07-03T09:00:00Z", "end_at": None, "description": "Allowance"}),
            OpenApiExample("Scheduled", response_only=True, status_codes=["201"], value=SCHEDULE_EXAMPLE),
        ],
    )
    @idempotent(endpoint="schedules.create")
    def post(self, request):
        data = validated(ScheduleCreateInput(data=request.data))
        schedule = schedule_create(owner=_owner(request), two_factor_code=twofactor_code_from(request), **data)
        return Response(schedule_representation(schedule), status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/schedules/{schedule.pk}"})


class ScheduleDetailApi(APIView):
    permission_classes = [IsOrganizationOrUser]

    @extend_schema(
        operation_id="schedules_retrieve", tags=["money movement: schedules"], summary="One of your recurring payments",
        parameters=[ORG_HEADER], responses={200: ScheduleOutput, **NOT_FOUND},
        examples=[OpenApiExample("Schedule", response_only=True, value=SCHEDULE_EXAMPLE)],
    )
    def get(self, request, schedule_id: int):
        return Response(schedule_representation(schedule_get(owner=_owner(request), schedule_id=schedule_id)))

    @extend_schema(
        operation_id="schedules_partial_update", tags=["money movement: schedules"], summary="Change an active or paused schedule",
        description="Amount, rule, end and description of the occurrences still to come; the wallets and the beneficiary cannot "
                    "change (cancel and create another). Occurrences already paid or being retried keep theirs.",
        parameters=[ORG_HEADER, TWO_FACTOR_PARAMETER], request=ScheduleUpdateInput,
        responses={200: ScheduleOutput, **NOT_FOUND,
                   400: OpenApiResponse(description="VALIDATION_ERROR naming the field (nothing to change, a bad rule, no occurrence left)"),
                   403: OpenApiResponse(description="2FA_REQUIRED: a user's larger amount at or above the step-up threshold"),
                   409: OpenApiResponse(description="INVALID_STATE: a cancelled or completed schedule", examples=[
                       OpenApiExample("Closed", status_codes=["409"], value=error_example(
                           "INVALID_STATE", "A cancelled schedule cannot be changed.", {"schedule_id": 7, "status": "cancelled"}))])},
        examples=[OpenApiExample("New amount and rule", request_only=True, value={"amount": "300.00", "rule": "FREQ=MONTHLY;BYMONTHDAY=15"}),
                  OpenApiExample("Changed", response_only=True, status_codes=["200"],
                                 value={**SCHEDULE_EXAMPLE, "amount": "300.00", "rule": "FREQ=MONTHLY;BYMONTHDAY=15"})],
    )
    def patch(self, request, schedule_id: int):
        data = validated(ScheduleUpdateInput(data=request.data))
        schedule = schedule_update(owner=_owner(request), schedule_id=schedule_id, two_factor_code=twofactor_code_from(request), **data)
        return Response(schedule_representation(schedule))


def _transition_api(name: str, service, source: str, target: str, example: dict):
    class _Api(APIView):
        permission_classes = [IsOrganizationOrUser]

        @extend_schema(
            operation_id=f"schedules_{name}", tags=["money movement: schedules"], parameters=[ORG_HEADER], request=None,
            summary=f"{name.capitalize()} a schedule ({source} -> {target})",
            responses={200: ScheduleOutput, **NOT_FOUND, 409: OpenApiResponse(description="INVALID_STATE: not allowed from its current state", examples=[
                OpenApiExample("Not allowed", status_codes=["409"], value=error_example(
                    "INVALID_STATE", f"A cancelled schedule cannot be {'cancelled' if name == 'cancel' else name + 'd'}.",
                    {"schedule_id": 7, "status": "cancelled"}))])},
            examples=[OpenApiExample(target.capitalize(), response_only=True, status_codes=["200"], value=example)],
        )
        def post(self, request, schedule_id: int):
            return Response(schedule_representation(service(owner=_owner(request), schedule_id=schedule_id)))

    _Api.__name__ = _Api.__qualname__ = f"Schedule{name.capitalize()}Api"
    return _Api


SchedulePauseApi = _transition_api("pause", schedule_pause, "active", "paused", {**SCHEDULE_EXAMPLE, "status": "paused", "next_run_at": None})
ScheduleResumeApi = _transition_api("resume", schedule_resume, "paused", "active", SCHEDULE_EXAMPLE)
ScheduleCancelApi = _transition_api("cancel", schedule_cancel, "active or paused", "cancelled", {
    **SCHEDULE_EXAMPLE, "status": "cancelled", "next_run_at": None, "closed_at": "2026-09-02T10:00:00Z"})


class ScheduleOccurrencesApi(APIView):
    permission_classes = [IsOrganizationOrUser]

    @extend_schema(
        operation_id="schedules_occurrences", tags=["money movement: schedules"], summary="A schedule's occurrences, newest first",
        description="Every instance that fell due: paid (`succeeded`, with its transaction), `in_review`, `retrying` (with "
                    "`next_attempt_at`), `failed` (no attempt left) or `skipped` (its retry dropped by a pause or cancel).",
        parameters=[PAGE_LIMIT, PAGE_OFFSET, ORG_HEADER],
        responses={200: page_of(ScheduleOccurrenceOutput(many=True), "ScheduleOccurrencePage"), **NOT_FOUND},
        examples=[OpenApiExample("Page", response_only=True, value={"results": [OCCURRENCE_EXAMPLE, {
            **OCCURRENCE_EXAMPLE, "id": 30, "scheduled_for": "2026-07-01T08:00:00Z", "status": "succeeded", "transaction_id": 1101,
            "transaction_status": "completed", "failure_code": None, "failure_reason": None, "next_attempt_at": None,
            "idempotency_key": "schedule:7:20260701T080000Z", "created_at": "2026-07-01T08:00:05Z", "updated_at": "2026-07-01T08:00:05Z"}],
            "count": 2, "limit": 20, "offset": 0})],
    )
    def get(self, request, schedule_id: int):
        occurrences = occurrences_of(owner=_owner(request), schedule_id=schedule_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(occurrences, request, view=self)
        return paginator.get_paginated_response([occurrence_representation(o) for o in page])
