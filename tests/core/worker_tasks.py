"""Tasks a real worker subprocess imports (`--include tests.core.worker_tasks`) in the worker
logging tests: one that fails with a known message, one that succeeds."""

from celery import shared_task


@shared_task(name="tests.core.worker_tasks.fail_loudly")
def fail_loudly(marker: str) -> None:
    raise RuntimeError(f"task failed on purpose: {marker}")


@shared_task(name="tests.core.worker_tasks.succeed")
def succeed(marker: str) -> str:
    return marker
