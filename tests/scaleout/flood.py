"""Run as `python -m tests.scaleout.flood ORGANIZATION_ID COUNT` with DATABASE_URL and
CELERY_BROKER_URL set: publishes COUNT webhook events to the organization's endpoints through the
real publishing service (`webhook_publish`: a delivery row and a `webhook.deliver` outbox message
each, dispatched after commit onto the `webhooks` queue), in transactions of 250. Prints the
number of deliveries written."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    from django.db import transaction

    from accounts.models import Organization
    from accounts.webhooks.publish import webhook_publish

    organization = Organization.objects.get(pk=int(sys.argv[1]))
    count, written = int(sys.argv[2]), 0
    for start in range(0, count, 250):
        with transaction.atomic():
            for i in range(start, min(start + 250, count)):
                written += len(webhook_publish(organization=organization, event_type="customer.updated",
                                               payload={"flood": i, "external_id": f"storm-{i}"}))
    print(written)


if __name__ == "__main__":
    main()
