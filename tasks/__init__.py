"""Prefect tasks: thin wrappers over the regkeeper core with retries, logging and artifacts."""

from regkeeper.config import register_secret_resolver


def _prefect_secret(name: str) -> str:
    from prefect.blocks.system import Secret

    return Secret.load(name).get()  # type: ignore[union-attr]  # prefect: load() is typed sync-or-coroutine


register_secret_resolver("prefect-secret", _prefect_secret)
