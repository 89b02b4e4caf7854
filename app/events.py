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
