"""Coffer's admin site: Django's, titled as the back office, with every registered ModelAdmin
audited (`compliance.admin_audit.AuditedAdmin`: changes and every admin action), and a home
page with the review queue's open cases and the sanctions-list warning. Installed through `CofferAdminConfig` in place
of `django.contrib.admin`, so `admin.site` and `@admin.register` use it everywhere."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class CofferAdminSite(admin.AdminSite):
    site_header = "Coffer back office"
    site_title = "Coffer back office"
    index_title = "Compliance and operations"
    index_template = "admin/coffer_index.html"

    def index(self, request, extra_context=None):
        """The home page also shows the review queue's open cases (and how many are past the SLA)
        and warns while the sanctions rule is active with an empty list."""
        from compliance.backoffice import backoffice_home_status

        return super().index(request, {**backoffice_home_status(request.user), **(extra_context or {})})

    def register(self, model_or_iterable, admin_class=None, **options):
        from compliance.admin_audit import AuditedAdmin

        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedAdmin):
            admin_class = type(admin_class.__name__, (AuditedAdmin, admin_class), {"__module__": admin_class.__module__})
        return super().register(model_or_iterable, admin_class, **options)


class CofferAdminConfig(AdminConfig):
    default_site = "config.admin.CofferAdminSite"
