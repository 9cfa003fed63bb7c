from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, customers and organizations"

    def ready(self) -> None:
        from accounts import org_admin, tasks, twofactor  # noqa: F401 - admin registrations, Celery tasks and beat entry, 2FA mail outbox handler
        from accounts.oauth import GRANT_TYPE, client_credentials_grant
        from accounts.services import token_grant_register

        token_grant_register(GRANT_TYPE, client_credentials_grant)
