"""The entry points: the ``regkeeper`` command line and the local demo. The only code besides
``flows/`` and ``tasks/`` that may import Prefect; the core (``regkeeper/``) never does."""
