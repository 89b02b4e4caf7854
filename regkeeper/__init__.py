"""regkeeper: keeps container image registries healthy (Prefect-free core)."""

__version__ = "0.1.0"
