"""config/urls.py tries the money endpoints first (the order Django resolves in costs CPU on every
request): that is safe only while no two URL patterns are the same path."""

from django.urls import URLResolver, get_resolver


def _paths(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _paths(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def test_no_two_url_patterns_share_a_path():
    paths = list(_paths(get_resolver().url_patterns))
    assert paths and len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
