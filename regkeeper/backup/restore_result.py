"""What a restore did, per snapshot tag: the actions, :class:`RestoreRow` (the diff and the
action taken) and :class:`RestoreResult` (rows, counters, summary)."""

from collections import Counter
from dataclasses import asdict, dataclass, field

ACTION_PRESENT = "already present"
ACTION_RESTORED = "restored"
ACTION_MOVED = "moved back"
ACTION_CANNOT = "cannot restore"
ACTION_WOULD_RESTORE = "would restore"
ACTION_WOULD_MOVE = "would move back"
ACTION_LEFT_MOVED = "left moved"


@dataclass
class RestoreRow:
    repository: str
    tag: str
    digest: str
    action: str
    reason: str = ""
    state: str = ""  # present | missing | moved (the diff)
    current: str = ""  # the digest the tag resolved to before, when moved
    missing_manifests: int = 0
    missing_blobs: int = 0
    kind: str = "tag"  # "tag" | "referrer" (an untagged referrer, restored after its subject)
    subject: str = ""  # referrer rows: the tagged image it belongs to, what it refers to,
    parent: str = ""  # its artifact type, how it was found at backup time (api)
    artifact_type: str = ""
    found_by: str = ""
    descriptor: dict = field(default_factory=dict, repr=False)  # what a fallback index lists

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("descriptor", None)
        return d


@dataclass
class RestoreResult:
    snapshot: str
    registry: str
    dry_run: bool
    rows: list[RestoreRow] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    referrers: list[dict] = field(default_factory=list)  # every snapshot referrer, what happened
    referrers_mode: str | None = None  # the registry's (client.referrers_mode)

    @property
    def failed(self) -> list[RestoreRow]:
        return [r for r in self.rows if r.action == ACTION_CANNOT]

    @property
    def tag_rows(self) -> list[RestoreRow]:
        return [r for r in self.rows if r.kind == "tag"]

    def counts(self) -> Counter:
        return Counter(r.action for r in self.tag_rows)

    def summary(self) -> dict:
        c = self.counts()
        tags = self.tag_rows
        s = {
            "snapshot": self.snapshot,
            "tags in snapshot": len(tags),
            "missing tags": sum(1 for r in tags if r.state == "missing"),
            "moved tags": sum(1 for r in tags if r.state == "moved"),
            "missing manifests": self.stats.get("missing_manifests", 0),
            "missing blobs": self.stats.get("missing_blobs", 0),
        }
        if self.dry_run:
            s["would restore"] = c.get(ACTION_WOULD_RESTORE, 0)
            s["would move back"] = c.get(ACTION_WOULD_MOVE, 0)
        else:
            s["restored"] = c.get(ACTION_RESTORED, 0)
            s["moved back"] = c.get(ACTION_MOVED, 0)
            s["manifests put"] = self.stats.get("manifests_put", 0)
            s["blobs mounted"] = self.stats.get("blobs_mounted", 0)
            s["blobs copied from blobSource"] = self.stats.get("blobs_copied", 0)
            s["configs uploaded from snapshot"] = self.stats.get("configs_uploaded", 0)
            s["bytes copied"] = self.stats.get("bytes_copied", 0)
        s["already present"] = c.get(ACTION_PRESENT, 0)
        if c.get(ACTION_LEFT_MOVED):
            s["left moved"] = c[ACTION_LEFT_MOVED]
        s["cannot restore"] = c.get(ACTION_CANNOT, 0)
        s.update(self._referrer_summary())
        return s

    def _referrer_summary(self) -> dict:
        """Referrers counted apart from tags: all the snapshot recorded, and the untagged ones
        (API-found) restore re-created after their subjects."""
        rc = Counter(r.action for r in self.rows if r.kind == "referrer")
        done = (ACTION_WOULD_RESTORE,) if self.dry_run else (ACTION_RESTORED,)
        return {
            "referrers mode": self.referrers_mode or "not asked",
            "referrers in snapshot": len(self.referrers),
            "untagged referrers (api)": sum(rc.values()),
            ("referrers would restore" if self.dry_run else "referrers restored"): sum(rc[a] for a in done),
            "referrers already present": rc.get(ACTION_PRESENT, 0),
            "referrers cannot restore": rc.get(ACTION_CANNOT, 0),
        }

    def merge(self, other: "RestoreResult") -> None:
        self.rows += other.rows
        self.referrers += other.referrers
        self.referrers_mode = self.referrers_mode or other.referrers_mode
        self.stats.update(other.stats)
        self.seconds += other.seconds
