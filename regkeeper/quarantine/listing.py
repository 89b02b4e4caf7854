"""What the quarantine of a registry holds, read from the registry itself: every record under
the namespace, and the rows ``regkeeper quarantine list`` and the reports show per run."""

from dataclasses import dataclass
from datetime import timedelta

from ..errors import NotFoundError, RegistryError
from ..globs import match_path
from ..oci import RegistryClient
from .record import Record, in_namespace, original_repo, parse_record, run_tag


def quarantine_repositories(client: RegistryClient, namespace: str) -> list[str]:
    return sorted(r for r in client.catalog() if in_namespace(r, namespace))


def read_records(
    client: RegistryClient,
    namespace: str,
    *,
    run: str | None = None,
    repositories: str | None = None,
    workers: int | None = None,
) -> list[Record]:
    """Every record (optionally of one run, of original repositories matching a glob), oldest
    first. A record that cannot be read raises RegistryError naming its repository and tag."""
    workers = workers or client.concurrency
    qrepos = [
        q
        for q in quarantine_repositories(client, namespace)
        if repositories is None or match_path(repositories, original_repo(namespace, q))
    ]
    if run:  # one run's record has a known tag in each repository: read it directly (404: none)
        pairs = [(q, run_tag(run)) for q in qrepos]
    else:

        def tags(q: str) -> list[tuple[str, str]]:
            try:
                return [(q, t) for t in client.list_tags(q)]
            except NotFoundError:
                return []

        pairs = [p for q, got, err in client.map(tags, qrepos, workers) for p in _ok(q, got, err)]

    def read(p: tuple[str, str]) -> Record:
        m = client.get_manifest(p[0], p[1])
        rec = parse_record(m.raw, f"{client.name}: {p[0]}:{p[1]}")
        rec.digest = m.digest
        return rec

    out = []
    for p, rec, err in client.map(read, pairs, workers):
        if err is not None:
            if isinstance(err, NotFoundError):
                continue  # released or undone meanwhile
            raise RegistryError(f"{client.name}: quarantine record {p[0]}:{p[1]}: {err}") from err
        if rec is not None:
            out.append(rec)
    return sorted(out, key=lambda r: (r.time, r.repository))


@dataclass(frozen=True)
class Held:
    """What the quarantine holds in all: runs, records, bytes (capacity, the inventory's line)."""

    runs: int
    records: int
    bytes: int


def held(client: RegistryClient, namespace: str) -> Held:
    recs = read_records(client, namespace)
    return Held(len({r.run for r in recs}), len(recs), sum(r.bytes_held for r in recs))


def _ok(q, got, err):
    if err is not None:
        raise RegistryError(f"quarantine repository {q}: tags could not be read ({err})") from err
    return got


def run_rows(records: list[Record], window: timedelta) -> list[dict]:
    """One row per run: repositories, the rules that deleted (gc, expire...), tags, manifests,
    bytes held, held since, release time."""
    runs: dict[str, dict] = {}
    for r in records:
        row = runs.setdefault(
            r.run,
            {
                "run": r.run,
                "repositories": [],
                "rules": set(),
                "tags": 0,
                "manifests": 0,
                "bytes_held": 0,
                "held_since": r.time,
                "release_at": r.release_at(window),
            },
        )
        row["repositories"].append(r.repository)
        row["rules"] |= {e.rule for e in r.entries if e.rule}
        row["tags"] += sum(len(e.tags) for e in r.entries)
        row["manifests"] += len(r.entries)
        row["bytes_held"] += r.bytes_held
        row["held_since"] = min(row["held_since"], r.time)
        row["release_at"] = min(row["release_at"], r.release_at(window))
    for row in runs.values():
        row["repositories"] = ", ".join(sorted(set(row["repositories"])))
        row["rules"] = ",".join(sorted(row["rules"]))
    return sorted(runs.values(), key=lambda x: x["held_since"])
