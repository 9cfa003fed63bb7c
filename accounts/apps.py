from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, customers and organizations"

    def ready(self) -> None:
        from accounts import org_admin, tasks  # noqa: F401 - admin registrations, Celery tasks and beat entry
