"""Fixtures shared by the compliance tests: `flag_kind` (a risk rule kind defined by the test,
firing for amounts whose cents are 13) lives with the risk tests and is shared from here."""

from tests.compliance.test_risk import flag_kind  # noqa: F401 - a fixture
