"""A pull-event receiver and a distribution 2.8 registry whose notifications point at it."""

from pathlib import Path

from regkeeper.config import load_config
from regkeeper.errors import RegkeeperError
from regkeeper.pulls.receiver import PullReceiver
from regkeeper.pulls.store import PullStore
from tests.support.procs import PortInUse, free_port, retry_taken_port, wait_until
from tests.support.registry import RegistryServer
from tests.support.rkconfig import registry_entry, write_config

NAME = "local-registry"


def notifications(port: int, token: str, registry: str = NAME) -> dict:
    """The registry-side ``notifications`` section (README's snippet), with a short backoff and
    a long timeout: an envelope the receiver stored but answered after the timeout (a loaded
    machine: the receiver shares the test process) is sent again, and its pulls count twice."""
    return {
        "notifications": {
            "endpoints": [
                {
                    "name": "regkeeper",
                    "url": f"http://127.0.0.1:{port}/events/{registry}",
                    "headers": {"Authorization": [f"Bearer {token}"]},
                    "timeout": "30s",
                    "threshold": 1,
                    "backoff": "300ms",
                    "ignoredmediatypes": ["application/octet-stream"],
                }
            ]
        }
    }


class PullStack:
    """Receiver (on ``.port``, store ``.store_url``) + registry notifying it with ``registry_token``."""

    def __init__(
        self,
        tmp: Path,
        *,
        token: str = "s3cret-pull-token",
        registry_token: str | None = None,
        exclude: list[str] | None = None,
        gc: dict | None = None,
        store_url: str | None = None,
    ):
        self.tmp = Path(tmp)
        self.token = token
        self._options = (registry_token or token, exclude, gc, store_url)
        self.rx: PullReceiver | None = None
        self._configure()

    def _configure(self) -> None:
        """Ports for the receiver and the registry, the registry's notifications and the
        regkeeper config naming both (again, on fresh ports, when one was taken meanwhile)."""
        registry_token, exclude, gc, store_url = self._options
        self.port = free_port()
        self.reg = RegistryServer(
            self.tmp / "reg", extra_config=notifications(self.port, registry_token), start=False
        )
        pulls = {
            "listen": f"127.0.0.1:{self.port}",
            "token": f"file:{self._token_file(self.token)}",
            "exclude": {"userAgents": exclude if exclude is not None else ["regkeeper/*"]},
            "heartbeat": "1s",
            "gapTolerance": "1m",
        }
        if store_url:
            pulls["store"] = store_url
        self.config_path = write_config(
            self.tmp / "regkeeper.yaml",
            [registry_entry(self.reg, NAME)],
            pulls=pulls,
            gc=gc,
            stateDir=str(self.tmp / "state"),
        )
        self.config = load_config(self.config_path)
        self.store_url = self.config.pulls_store_url()

    def _token_file(self, token: str) -> Path:
        p = self.tmp / "pull-token"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(token + "\n")
        return p

    def start_receiver(self) -> PullReceiver:
        try:
            self.rx = PullReceiver(self.config).start()
        except RegkeeperError as e:
            if "address already in use" not in str(e).lower():
                raise
            raise PortInUse(f"{e}: taken by another process since it was chosen") from None
        return self.rx

    def stop_receiver(self) -> None:
        if self.rx is not None:
            self.rx.stop()
            self.rx = None

    def start(self) -> "PullStack":
        """Receiver, then the registry; a port taken since it was chosen: both on fresh ports
        (nothing outside holds them yet). Anything started is stopped when the start fails."""

        def attempt() -> None:
            try:
                self.start_receiver()
                self.reg.start()
            except BaseException:
                self.stop()
                raise

        retry_taken_port(attempt, self._configure)
        return self

    def stop(self) -> None:
        self.reg.stop()
        self.stop_receiver()

    def rows(self) -> list[dict]:
        s = PullStore(self.store_url)
        try:
            return s.rows(NAME)
        finally:
            s.close()

    def wait_rows(self, n: int, timeout: float = 60.0) -> list[dict]:
        wait_until(lambda: len(self.rows()) >= n, timeout=timeout, what=f"{n} pull rows")
        return self.rows()

    def metric(self, name: str, **labels) -> float:
        assert self.rx is not None
        v = self.rx.metrics.registry.get_sample_value(name, labels)
        return float(v or 0.0)
