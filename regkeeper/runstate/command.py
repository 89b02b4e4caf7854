"""Running one step of a read-only window (``reclaim.readOnly`` / ``garbageCollect`` /
``readWrite``, argv lists) as a child process, with a timeout, reporting the child's pid as it
starts (the window record names it: recovery leaves a window alone while its garbage-collect
still runs on this host). Errors name the config key (``reclaim.<step>``) and never the
environment."""

import logging
import os
import shlex
import subprocess
from collections.abc import Callable

from ..errors import RegkeeperError

log = logging.getLogger(__name__)


def run_step(
    argv: list[str], timeout: float, what: str, on_start: Callable[[int], None] | None = None
) -> str:
    """Run ``argv``; return its output (stdout + stderr). Raises RegkeeperError naming
    ``reclaim.<what>`` when it cannot start, times out (it is killed) or exits non-zero."""
    log.info("reclaim: %s: %s", what, shlex.join(argv))
    try:
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise RegkeeperError(f"reclaim.{what}: command not found: {argv[0]}") from None
    except OSError as e:
        raise RegkeeperError(f"reclaim.{what}: cannot start {argv[0]}: {e.strerror or e}") from None
    try:
        if on_start is not None:
            on_start(p.pid)
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RegkeeperError(f"reclaim.{what}: timed out after {timeout:.0f}s") from None
    except BaseException:
        p.kill()
        p.wait()
        raise
    out = (out or "") + (err or "")
    if p.returncode != 0:
        raise RegkeeperError(f"reclaim.{what} exited {p.returncode}: {out.strip()[-500:]}")
    return out
