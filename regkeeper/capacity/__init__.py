"""Capacity (being split into submodules; see the next commit)."""

from .state import *  # noqa: F401,F403
from .state import _iso, os  # noqa: F401
