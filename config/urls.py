from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.dashboard.views.landing import landing
from config.docs import redoc_bundle
from core import views as core_views
from core.metrics import metrics_view

# The money endpoints first: Django tries patterns in order, and no two includes share a path.
api_v1 = [
    path("", include("wallets.urls")),
    path("", include("ledger.urls")),
    path("", include("payorders.urls")),
    path("", include("accounts.urls")),
    path("", include("compliance.urls")),
]


urlpatterns = [
    path("health", core_views.health, name="health"),
    path("ready", core_views.ready, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("pay/", include("payorders.checkout.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/redoc/redoc.standalone.js", redoc_bundle, name="redoc-bundle"),
    path("admin/", admin.site.urls),
    path("dashboard/", include("accounts.dashboard.urls")),
    path("", landing, name="landing"),
]
