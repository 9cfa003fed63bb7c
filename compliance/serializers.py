from rest_framework import serializers

from compliance.models import AuditEvent


class AuditEventOutput(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor_id", "actor_label", "action", "target_type", "target_id", "data", "prev_hash", "hash"]
        read_only_fields = fields


class AuditVerifyOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    checked = serializers.IntegerField()
    head_hash = serializers.CharField(allow_null=True)
    first_invalid_id = serializers.IntegerField(allow_null=True)
