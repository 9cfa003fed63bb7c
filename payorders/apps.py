from django.apps import AppConfig


class PayordersConfig(AppConfig):
    name = "payorders"
    verbose_name = "Pay orders"

    def ready(self) -> None:
        from payorders import tasks  # noqa: F401 - Celery tasks and the `payorder.settle` outbox handler
