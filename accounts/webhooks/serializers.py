"""Input and output serializers of the webhook API. Names are unique across the project so
drf-spectacular's components stay distinct."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.livemode import object_livemode


class WebhookEndpointCreateInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False, max_length=100,
                                   help_text='Event names (e.g. "transaction.completed"), "<namespace>.*", or ["*"] for all.')
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class WebhookEndpointOutput(serializers.ModelSerializer):
    livemode = serializers.SerializerMethodField(help_text="False for a test-mode endpoint (a test key's, or any on the sandbox): it gets test-mode events only.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "is_enabled", "livemode", "created_at", "updated_at", "disabled_at",
                  "disabled_reason", "disabled_detail"]
        extra_kwargs = {
            "disabled_reason": {"help_text": '"" while enabled; "organization" (disabled by you) or "gone" (the endpoint answered 410 Gone).'},
            "disabled_detail": {"help_text": "Why the endpoint was disabled, in words."},
        }


    def get_livemode(self, endpoint) -> bool:
        return object_livemode(endpoint)


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(help_text="Standard Webhooks signing secret (whsec_...). Shown once, now.")

    class Meta(WebhookEndpointOutput.Meta):
        fields = [*WebhookEndpointOutput.Meta.fields, "secret"]


class WebhookAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "url", "status_code", "duration_ms", "response_excerpt", "error", "succeeded"]


class WebhookDeliveryOutput(serializers.ModelSerializer):
    webhook_id = serializers.CharField(read_only=True, help_text="The `webhook-id` header of every attempt.")
    endpoint_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhook_id", "endpoint_id", "event_id", "event_type", "status", "attempt_count",
            "next_attempt_at", "last_attempt_at", "last_status_code", "last_error", "delivered_at",
            "created_at", "payload",
        ]


class WebhookDeliveryDetailOutput(WebhookDeliveryOutput):
    attempts = WebhookAttemptOutput(many=True, read_only=True)

    class Meta(WebhookDeliveryOutput.Meta):
        fields = [*WebhookDeliveryOutput.Meta.fields, "attempts"]


class WebhookEventTypeOutput(serializers.Serializer):
    type = serializers.CharField(help_text='The event name, e.g. "customer.created"; subscribe by it, "<namespace>.*" or "*".')
    description = serializers.CharField()
    schema = serializers.JSONField(help_text="JSON Schema (draft 2020-12) of the event's `data`.")
    example = serializers.JSONField(help_text="An example `data`, valid against `schema`.")
