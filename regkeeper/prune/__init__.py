"""gc/expire pipeline (being split)."""

from .delete import *  # noqa: F401,F403
from .delete import delete_levels  # noqa: F401
from .pipeline import *  # noqa: F401,F403
from .pipeline import _push_source_label  # noqa: F401
