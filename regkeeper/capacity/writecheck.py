"""Does the registry take writes? Each capacity run starts a blob upload
(``POST /v2/<writeCheckRepository>/blobs/uploads/``, through the OCI client) and cancels it
(``DELETE`` on the upload's location): distribution answers 405 (UNSUPPORTED) to the POST while
``storage.maintenance.readonly`` is on; some registries answer 503 saying read-only. No blob and
no repository is created (a cancelled upload leaves nothing in the catalog).

A registry found read-only alerts (``readonly.ReadOnlyAlert`` kind ``read-only``) whoever left it
so, unless a live regkeeper read-only window owns it (then the report says "read-only for
garbage-collect by run R since T"). One alert when it turns read-only, repeated every
``REASSERT`` while it stays so, and a resolving ``writable`` alert when writes work again; the
state (``readonly-<registry>.json`` beside the capacity state) is saved only once every target
accepted the alert, so an undelivered alert is sent again by the next run.
"""

import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import AuthError, ReadOnlyError, RegistryError
from ..util import atomic_write
from .readonly import ReadOnlyAlert
from .timestamps import _iso, _parse_iso

log = logging.getLogger(__name__)

REASSERT = timedelta(hours=12)  # below Alertmanager's 24h firing ttl: a firing alert stays


@dataclass(frozen=True)
class WriteCheck:
    registry: str
    refuses_writes: bool | None  # None: unknown (no permission to push, unreachable ...)
    detail: str
    status: int | None = None


def _says_read_only(text: str) -> bool:
    t = text.lower().replace("-", "").replace("_", "").replace(" ", "")
    return "readonly" in t


def check_writes(client, repository: str) -> WriteCheck:
    """Start a blob upload in ``repository`` and cancel it (the OCI client's own requests)."""
    path = f"/v2/{repository}/blobs/uploads/"
    try:
        location = client.start_upload(repository)
    except ReadOnlyError:
        return WriteCheck(client.name, True, f"POST {path}: HTTP 405: the registry refuses writes", 405)
    except AuthError as e:
        return WriteCheck(
            client.name,
            None,
            f"write check not permitted ({e}): read-only state "
            "unknown; give push credentials or set capacity.writeCheck: false",
            e.status,
        )
    except RegistryError as e:
        if e.status == 503 and _says_read_only(str(e)):
            return WriteCheck(client.name, True, f"POST {path}: HTTP 503: {e.message}", 503)
        return WriteCheck(client.name, None, f"write check failed: {e}", e.status)
    if location:
        try:
            client.cancel_upload(repository, location)
        except RegistryError as e:  # the registry's upload purging removes it later
            log.info("registry %s: write check upload not cancelled: %s", client.name, e)
    return WriteCheck(client.name, False, "writes accepted (a blob upload was started and cancelled)", 202)


@dataclass
class ReadOnlyState:
    registry: str
    read_only: bool = False  # reported (alerted) as read-only
    since: str | None = None
    alerted_at: str | None = None


class ReadOnlyStore:
    """``<directory>/readonly-<registry>.json`` (written atomically, fsynced)."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, registry: str) -> Path:
        if not registry or "/" in registry or registry.startswith("."):
            raise ValueError(f"registry name {registry!r} cannot name a state file")
        return self.directory / f"readonly-{registry}.json"

    def load(self, registry: str) -> ReadOnlyState:
        try:
            d = json.loads(self.path(registry).read_text())
            return ReadOnlyState(registry, bool(d.get("read_only")), d.get("since"), d.get("alerted_at"))
        except (OSError, ValueError, AttributeError):
            return ReadOnlyState(registry)

    def save(self, st: ReadOnlyState) -> None:
        atomic_write(self.path(st.registry), json.dumps(asdict(st), indent=1) + "\n", fsync=True)


def evaluate_writes(
    check: WriteCheck,
    prev: ReadOnlyState,
    *,
    owned_by: str | None = None,
    stale: str | None = None,
    now: datetime | None = None,
    reassert: timedelta = REASSERT,
) -> tuple[ReadOnlyState, ReadOnlyAlert | None]:
    """The new state and the alert to send (None: nothing to say). ``owned_by``: a live
    regkeeper window explains the read-only state (no alert); ``stale``: a window left by a run
    that is gone (said in the alert)."""
    now = now or datetime.now(UTC)
    r = check.registry
    if check.refuses_writes is None or (check.refuses_writes and owned_by):
        return prev, None
    if check.refuses_writes:
        last = _parse_iso(prev.alerted_at)
        if prev.read_only and last is not None and now - last < reassert:
            return prev, None
        since = prev.since if prev.read_only and prev.since else _iso(now)
        why = f"; {stale}" if stale else "; no regkeeper run holds a read-only window on it"
        msg = (
            f"[READ-ONLY] registry {r} refuses writes since {since} ({check.detail}): every push "
            f"fails{why}. Switch it back to read-write (storage.maintenance.readonly)."
        )
        return (
            ReadOnlyState(r, True, since, _iso(now)),
            ReadOnlyAlert(r, "read-only", msg, now, {"since": since, "detail": check.detail}),
        )
    if prev.read_only:
        msg = f"[RESOLVED] registry {r} takes writes again (read-only since {prev.since})"
        return (
            replace(prev, read_only=False, since=None, alerted_at=_iso(now)),
            ReadOnlyAlert(r, "writable", msg, now, {"since": prev.since}),
        )
    return prev, None


@dataclass
class ReadOnlyCheck:
    """One registry, one run: the write check, what explains a refusal, the new state and the
    alert to send (sending and saving is the caller's: state saved once delivered)."""

    check: WriteCheck
    owned_by: str | None  # a live regkeeper window: "read-only for garbage-collect by ..."
    stale: str | None  # a window whose owner is gone (recovery closes it)
    state: ReadOnlyState
    alert: ReadOnlyAlert | None

    @property
    def unexpected(self) -> bool:
        return bool(self.check.refuses_writes) and not self.owned_by


def read_only_check(
    client, repository: str, *, registry: str, state_root, store: ReadOnlyStore, now: datetime | None = None
) -> ReadOnlyCheck:
    """Check writes, then judge a refusal against regkeeper's own read-only window (if any)."""
    from ..runstate import window_status

    check = check_writes(client, repository)
    owned = stale = None
    if check.refuses_writes:
        st = window_status(state_root, registry)
        if st is not None and st.live:
            owned = st.describe()
        elif st is not None:
            stale = f"a read-only window of {st.window.describe()} is open but its owner is gone ({st.why})"
    state, alert = evaluate_writes(check, store.load(registry), owned_by=owned, stale=stale, now=now)
    return ReadOnlyCheck(check, owned, stale, state, alert)
