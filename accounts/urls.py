"""The API routes of accounts under /api/v1/: identity (auth, users, 2FA), organizations (keys,
customers) and webhooks. The dashboard has its own: accounts.dashboard.urls."""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.identity.urls")),
    path("", include("accounts.orgs.urls")),
    path("", include("accounts.webhooks.urls")),
]
