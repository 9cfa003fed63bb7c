from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, customers and organizations"

    def ready(self) -> None:
        from accounts import org_admin, tasks, twofactor  # noqa: F401 - admin registrations, outbox handlers (webhooks, 2FA mail)
        from accounts.oauth import GRANT_TYPE, client_credentials_grant
        from accounts.services import token_grant_register

        token_grant_register(GRANT_TYPE, client_credentials_grant)
