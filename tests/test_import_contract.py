"""The import contract (`.importlinter`, docs/architecture.md): `lint-imports` keeps it, every
module of every app is placed in one of its layers (a new module cannot escape the contract
unnoticed), and a wrong-way import is refused naming the layers it crosses."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract() -> configparser.ConfigParser:
    config = configparser.ConfigParser(inline_comment_prefixes=None)
    config.read(ROOT / ".importlinter")
    return config


def _root_packages(config: configparser.ConfigParser) -> list[str]:
    return config["importlinter"]["root_packages"].split()


def _layer_modules(config: configparser.ConfigParser) -> set[str]:
    modules = set()
    for line in config["importlinter:contract:layers"]["layers"].splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            modules.update(part.strip() for part in line.replace("|", ":").split(":"))
    return modules


def _project_modules(root: Path, packages: list[str]) -> set[str]:
    """Every module and package below the root packages, but migrations (history, not code
    that runs on a request) and the packages themselves."""
    found = set()
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts or any("." in part for part in parts):  # gunicorn.conf.py is not importable
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) > 1:
                found.add(".".join(parts))
    return found


def _run(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_contract_is_kept():
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_every_module_of_every_app_is_in_a_layer():
    config = _contract()
    layered = _layer_modules(config)
    modules = _project_modules(ROOT, _root_packages(config))

    def covered(module: str) -> bool:
        if any(module == m or module.startswith(m + ".") for m in layered):
            return True
        # A package whose children are placed one by one (accounts.identity, ...).
        return any(m.startswith(module + ".") for m in layered)

    assert sorted(m for m in modules if not covered(m)) == []


def test_a_wrong_way_import_fails_with_the_rule_it_breaks(tmp_path):
    """The ledger (below the money path) importing the pipeline breaks the contract, and the
    report names both modules and the line."""
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns(".venv", "node_modules", ".git", "__pycache__", "tests", "static", "templates", "bench")
    shutil.copytree(ROOT, copy, ignore=ignore, symlinks=True)
    services = copy / "ledger" / "services.py"
    services.write_text(services.read_text() + "\nfrom wallets.pipeline import money_path  # wrong way\n")
    result = _run(copy)
    assert result.returncode == 1, result.stdout
    assert "1 broken" in result.stdout
    assert "ledger.services is not allowed to import wallets.pipeline" in result.stdout
