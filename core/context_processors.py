"""Template context every page gets: whether this deployment is in test mode (core.livemode), for
the "Test mode" badge of the dashboard and the back office."""

from core.livemode import deployment_livemode


def livemode(request) -> dict:
    return {"coffer_livemode": deployment_livemode()}
