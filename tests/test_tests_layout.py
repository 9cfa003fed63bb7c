"""The tests' own layout (tests/factories/__init__.py): no test module or conftest imports a
conftest; shared helpers and fixtures live in tests/factories/."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_nothing_imports_a_conftest():
    offenders = [
        f"{path.relative_to(TESTS)}: {line.strip()}"
        for path in TESTS.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from\s+tests\.\S*conftest\s+import|import\s+tests\.\S*conftest)", line)
    ]
    assert offenders == []
