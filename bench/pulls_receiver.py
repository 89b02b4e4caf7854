"""Benchmark: the pull-event receiver's answer time per envelope and events per second.

A client POSTs envelopes shaped like distribution 2.8's (each: ``--pulls`` manifest pulls over a
few hundred digests, plus ``--blobs`` blob pulls the receiver must skip) over one keep-alive
connection, as the registry's notification sink does. Side by side in the same run:

- baseline: the same HTTP server and handler, token check and JSON parse, with a store that
  writes nothing (what HTTP + parsing cost alone);
- sqlite, no event ids: the default store without the resend check (events carry no id);
- sqlite: the default store (a file, WAL, one transaction per envelope; each pull's event id
  kept, so an envelope sent again is not counted twice);
- postgresql: Debian's PostgreSQL 15 on 127.0.0.1, when installed (``--no-postgres`` skips it).

Prints per store: envelopes, p50/p95/max answer ms, events/s, CPU seconds of this process per
1000 envelopes, and the ratio of p50 against the baseline.

    python bench/pulls_receiver.py [--envelopes 2000] [--pulls 10] [--blobs 20] [--no-postgres]
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from regkeeper.config import parse_config  # noqa: E402
from regkeeper.pulls.receiver import PullReceiver  # noqa: E402
from regkeeper.pulls.store import PullStore, Recorded  # noqa: E402

TOKEN = "bench-token"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class NullStore:
    kind = "none"

    def record(self, registry, pulls, now):
        return Recorded(len(list(pulls)), 0)

    def receiver_started(self, now, tolerance_s):
        return []

    def heartbeat(self, now):
        pass

    def close(self):
        pass


def envelopes(n: int, pulls: int, blobs: int, seed: int = 7, ids: bool = True) -> list[bytes]:
    """``ids``: each event has its own id, as distribution sends (the store keeps the ids of
    the pulls it stored: one more row per pull); without, the store skips that step."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        evs = []
        for j in range(pulls):
            d = rng.randrange(300)
            eid = f"{i}-{j}" if ids else ""
            evs.append(_event(eid, f"team-{d % 30}/app", f"sha256:{d:064x}", MANIFEST, f"v{d}"))
        for _ in range(blobs):
            evs.append(
                _event(
                    f"{i}-b",
                    "team-0/app",
                    f"sha256:{rng.getrandbits(256):064x}",
                    "application/octet-stream",
                    None,
                )
            )
        out.append(json.dumps({"events": evs}).encode())
    return out


def _event(eid, repo, digest, media, tag):
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    target = {"mediaType": media, "size": 1234, "digest": digest, "repository": repo, "url": "http://r/v2/x"}
    if tag:
        target["tag"] = tag
    return {
        "id": eid,
        "timestamp": ts,
        "action": "pull",
        "target": target,
        "request": {
            "id": "r",
            "addr": "10.1.2.3:4567",
            "host": "reg:5000",
            "method": "GET",
            "useragent": "containerd/1.7.2",
        },
        "actor": {},
        "source": {"addr": "reg-0:5000", "instanceID": "abc"},
    }


def run(label: str, store, bodies: list[bytes]) -> dict:
    cfg = parse_config(
        "mirrorRepositories: [{name: reg, type: local, url: http://127.0.0.1:5000}]\n"
        f"pulls: {{listen: '127.0.0.1:5080', token: {TOKEN}}}\n"
    )
    rx = PullReceiver(cfg, store=store, listen=("127.0.0.1", 0)).start()
    s = requests.Session()
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/vnd.docker.distribution.events.v1+json",
    }
    url = f"{rx.url}/events/reg"
    for b in bodies[:50]:  # warm-up
        s.post(url, data=b, headers=headers, timeout=10)
    lat = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for b in bodies:
        t = time.perf_counter()
        r = s.post(url, data=b, headers=headers, timeout=10)
        lat.append(time.perf_counter() - t)
        assert r.status_code == 200, r.status_code
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rx.stop()
    s.close()
    events = sum(len(json.loads(b)["events"]) for b in bodies)
    lat.sort()
    return {
        "label": label,
        "envelopes": len(bodies),
        "p50_ms": statistics.median(lat) * 1000,
        "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
        "max_ms": lat[-1] * 1000,
        "events_per_s": events / wall,
        "cpu_s_per_1000": cpu / len(bodies) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envelopes", type=int, default=2000)
    ap.add_argument("--pulls", type=int, default=10)
    ap.add_argument("--blobs", type=int, default=20)
    ap.add_argument("--no-postgres", action="store_true")
    a = ap.parse_args()
    bodies = envelopes(a.envelopes, a.pulls, a.blobs)
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-pulls-"))
    results = [run("baseline (no store)", NullStore(), bodies)]
    no_ids = envelopes(a.envelopes, a.pulls, a.blobs, ids=False)
    results.append(run("sqlite, no event ids", PullStore(f"sqlite:///{tmp}/noids.sqlite"), no_ids))
    results.append(run("sqlite", PullStore(f"sqlite:///{tmp}/pulls.sqlite"), bodies))
    if not a.no_postgres:
        try:
            from tests.support.postgres import PostgresServer, available
        except ImportError:
            available = None  # type: ignore[assignment]
        if available and available():
            with PostgresServer() as pg:
                results.append(run("postgresql", PullStore(pg.new_database()), bodies))
    base = results[0]["p50_ms"]
    print(
        f"{a.envelopes} envelopes x ({a.pulls} manifest pulls + {a.blobs} blob pulls), one keep-alive connection"
    )
    print(
        f"{'store':22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'events/s':>10} {'CPU s/1000':>11} {'p50 ratio':>10}"
    )
    for r in results:
        print(
            f"{r['label']:22} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.1f} {r['events_per_s']:10.0f} "
            f"{r['cpu_s_per_1000']:11.2f} {r['p50_ms'] / base:10.2f}"
        )


if __name__ == "__main__":
    main()
