from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who is asking: identity (users, login, tokens, 2FA), organizations (keys and their auth
    schemes, tenancy), the webhook engine, and the merchant dashboard. One app label, `accounts`."""

    name = "accounts"
    verbose_name = "Users, customers and organizations"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from accounts import admin  # noqa: F401 - admin registrations
        from accounts import tasks  # noqa: F401 - Celery tasks and the webhook retention's beat entry
        from accounts.identity.authentication import user_cache_forget
        from accounts.identity.email_codes import email_otp_deliver
        from accounts.identity.login import LOGIN_LOCKED_TOPIC, login_locked_notify
        from accounts.identity.services import SIGNUP_EXISTING_TOPIC, signup_existing_notify
        from accounts.identity.tokens import token_grant_register
        from accounts.identity.twofactor import EMAIL_CODE_TOPIC
        from accounts.models import User
        from accounts.orgs.oauth import GRANT_TYPE, client_credentials_grant
        from accounts.webhooks import WEBHOOK_TOPIC
        from accounts.webhooks.deliver import webhook_deliver, webhook_retry_schedule
        from accounts.webhooks.services import ENDPOINT_DISABLED_TOPIC, webhook_endpoint_disabled_notify
        from core.outbox import register_handler, register_retry_schedule

        # Outbox handlers, in every process that dispatches: webhook attempts (on their own retry
        # schedule), and the mails of 2FA codes, account lockouts, signups with a taken address
        # and webhook endpoints disabled after 410 Gone.
        register_handler(WEBHOOK_TOPIC, webhook_deliver)
        register_retry_schedule(WEBHOOK_TOPIC, webhook_retry_schedule)
        register_handler(ENDPOINT_DISABLED_TOPIC, webhook_endpoint_disabled_notify)
        register_handler(EMAIL_CODE_TOPIC, email_otp_deliver)
        register_handler(LOGIN_LOCKED_TOPIC, login_locked_notify)
        register_handler(SIGNUP_EXISTING_TOPIC, signup_existing_notify)
        token_grant_register(GRANT_TYPE, client_credentials_grant)

        post_save.connect(user_cache_forget, sender=User, dispatch_uid="accounts.user_cache_forget.saved")
        post_delete.connect(user_cache_forget, sender=User, dispatch_uid="accounts.user_cache_forget.deleted")
