"""Organization endpoints (API keys, customers, webhooks)."""

urlpatterns: list = []
