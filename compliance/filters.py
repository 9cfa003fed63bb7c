import django_filters

from compliance.models import AuditEvent
from core.filters import InstantFilter


class AuditEventFilter(django_filters.FilterSet):
    """?action= &actor=<user id> &target_type= &target_id= &from= &to= (ISO 8601, inclusive)."""

    action = django_filters.CharFilter(field_name="action")
    actor = django_filters.NumberFilter(field_name="actor_id")
    target_type = django_filters.CharFilter(field_name="target_type")
    target_id = django_filters.CharFilter(field_name="target_id")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


# `from` is a Python keyword, so these two are added by name.
AuditEventFilter.base_filters["from"] = InstantFilter(bound="from")
AuditEventFilter.base_filters["to"] = InstantFilter(bound="to")
