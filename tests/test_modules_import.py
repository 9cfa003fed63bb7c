"""Every module of every app imports (a module reached only through a URL or a Celery task would
otherwise fail first in production): migrations and the production settings, which refuse to
load without their environment (tests/core/test_production_settings.py), aside."""

import importlib
import pkgutil

import pytest

APPS = ("accounts", "compliance", "core", "ledger", "payorders", "wallets", "config")


def _modules():
    for app in APPS:
        package = importlib.import_module(app)
        for info in pkgutil.walk_packages(package.__path__, app + "."):
            if ".migrations." in info.name or info.name in ("config.settings.production", "config.gunicorn.conf"):
                continue
            yield info.name


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_imports(module):
    importlib.import_module(module)
