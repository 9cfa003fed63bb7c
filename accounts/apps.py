from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, customers and organizations"

    def ready(self) -> None:
        from accounts import org_admin, tasks, twofactor  # noqa: F401 - admin registrations, outbox handlers (webhooks, 2FA mail)
        from accounts.oauth import GRANT_TYPE, client_credentials_grant
        from accounts.services import token_grant_register

        token_grant_register(GRANT_TYPE, client_credentials_grant)

        from django.db.models.signals import post_delete, post_save

        from accounts.authentication import user_cache_forget
        from accounts.models import User

        post_save.connect(user_cache_forget, sender=User, dispatch_uid="accounts.user_cache_forget.saved")
        post_delete.connect(user_cache_forget, sender=User, dispatch_uid="accounts.user_cache_forget.deleted")
