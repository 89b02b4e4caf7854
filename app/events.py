"""``regkeeper events serve`` and ``regkeeper serve --events``: the pull-event receiver
(regkeeper/pulls/receiver.py) in the foreground or in a thread beside the deployments."""

import signal
import sys
import threading


def events_serve(args) -> int:
    """``regkeeper events serve``: the receiver in the foreground until interrupted."""
    from regkeeper.context import load_context
    from regkeeper.pulls.receiver import PullReceiver

    ctx = load_context(args.config)
    listen = None
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        listen = (host.strip("[]"), int(port))
    rx = PullReceiver(ctx.config, listen=listen)
    print(
        f"regkeeper: pull-event receiver on {rx.url} (POST /events/<registry>, GET /metrics)", file=sys.stderr
    )
    print(f"regkeeper: store {rx.store.kind}", file=sys.stderr)
    # SIGTERM (kubectl delete, a rollout) stops serving cleanly: the open envelope is answered
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=rx.httpd.shutdown, daemon=True).start())
    rx.serve_forever()
    return 0


def start_receiver():
    """``regkeeper serve --events``: the receiver in a thread beside the deployments."""
    from regkeeper.context import load_context
    from regkeeper.pulls.receiver import PullReceiver

    rx = PullReceiver(load_context(None).config).start()
    print(f"regkeeper: pull-event receiver on {rx.url}", file=sys.stderr)
    return rx


def check_pulls(config) -> int:
    """``regkeeper check``: the pull store opens, the token resolves, and what each registry's
    collection looks like. Returns the number of problems."""
    from regkeeper.errors import RegkeeperError
    from regkeeper.pulls.store import PullStore
    from regkeeper.util import redact_url, utcnow

    if config.pulls is None:
        return 0
    try:
        if config.pulls.token is not None:
            config.pulls.token.get()
        url = config.pulls_store_url()
        store = PullStore(url)
    except (RegkeeperError, OSError) as e:
        print(f"pulls: {e}")
        return 1
    try:
        print(f"pulls: store ok ({store.kind}, {redact_url(url) if store.kind != 'sqlite' else url})")
        tol = config.pulls.gap_tolerance.total_seconds()
        for rc in config.mirror_repositories:
            h = store.history(rc.name, tol)
            since = (
                f"collecting since {h.since:%Y-%m-%dT%H:%M:%SZ}"
                if h.since
                else "not collecting yet (no event received)"
            )
            print(f"pulls: {rc.name}: {since}; {h.status()}")
        alive = h.alive if config.mirror_repositories else None
        if alive is None or utcnow() - alive > config.pulls.gap_tolerance:
            print("pulls: the receiver is not running (no recent heartbeat): pulledWithin keeps everything")
    finally:
        store.close()
    return 0
