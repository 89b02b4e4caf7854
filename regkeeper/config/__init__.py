"""Configuration (being split into submodules; see the next commit)."""

from .loader import *  # noqa: F401,F403
