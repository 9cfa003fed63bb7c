from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Coffer plumbing"

    def ready(self) -> None:
        from core import metrics, pooling, requestid

        pooling.install()  # a transaction-mode pooler nobody declared (issue 15)
        metrics.install()  # webhook attempts counted as they are saved
        requestid.install()  # request ids through Celery
