"""``regkeeper alerts install``: the Prefect side of regkeeper's own alerts.

Creates (or updates, by name) through the Prefect API:
- a **Custom Webhook** notification block (``capacity.automation.block``, default
  ``regkeeper-alerts``) that POSTs to ``capacity.automation.webhook``: the URL is resolved from
  its secret reference and stored only in the block's *secrets* (the block's ``url`` field is
  the template ``{{webhook_url}}``), so neither the UI nor this command ever shows it;
- an **automation** (``capacity.automation.name``) that fires on every event the capacity flow
  emits, on any registry: ``regkeeper.capacity.warn|critical|resolved`` (thresholds) and
  ``regkeeper.readonly.read-only|recovery-failed|recovered|writable`` (a registry that refuses
  writes, a read-only window recovered), and sends a notification through that block.

Idempotent: run it again after changing the config and the block and the automation are
updated in place. ``automation_spec`` is also the shape of
``deployments/monitoring/prefect-automation.yaml`` (``prefect automation create --from-file``).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from regkeeper.capacity.alerts import EVENT_PREFIX
from regkeeper.capacity.readonly import KINDS, READONLY_EVENT_PREFIX
from regkeeper.util import redact_url

EVENTS = tuple(f"{EVENT_PREFIX}.{lvl}" for lvl in ("warn", "critical", "resolved")) + tuple(
    f"{READONLY_EVENT_PREFIX}.{k}" for k in KINDS
)
SECRET_KEY = "webhook_url"  # the block's secret the url template names
SUBJECT = "regkeeper: {{ event.event }} on registry {{ event.resource['prefect.resource.name'] }}"
BODY = (
    "{{ event.payload.message }}\n"
    "registry: {{ event.resource['prefect.resource.name'] }} | event: {{ event.event }} | "
    "at: {{ event.occurred }}"
)
PAYLOADS = {
    "slack": {"text": "*{{subject}}*\n{{body}}"},  # Slack, Mattermost, Rocket.Chat incoming webhooks
    "json": {"subject": "{{subject}}", "body": "{{body}}", "source": "regkeeper"},
}


@dataclass
class Installed:
    block: str  # custom-webhook/<name>
    block_id: UUID
    automation: str
    automation_id: UUID
    created: bool  # False: an existing automation of that name was updated
    target: str  # the webhook, redacted (scheme://host/…)


def automation_spec(block_document_id: str | UUID, name: str = "regkeeper capacity alerts") -> dict:
    """The automation as ``prefect automation create --from-file`` reads it (one entry)."""
    return {
        "name": name,
        "description": (
            "regkeeper's capacity alerts (warn at 80%, critical at 90%, resolved) and read-only "
            "alerts (a registry refusing writes, a read-only window recovered), once per change "
            "of state per registry, sent to a webhook. Created by `regkeeper alerts install`."
        ),
        "enabled": True,
        "tags": ["regkeeper", "capacity"],
        "trigger": {
            "type": "event",
            "posture": "Reactive",
            "expect": list(EVENTS),
            "match": {"prefect.resource.id": "regkeeper.registry.*"},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": 0,
        },
        "actions": [
            {
                "type": "send-notification",
                "block_document_id": str(block_document_id),
                "subject": SUBJECT,
                "body": BODY,
            }
        ],
    }


def webhook_block(url: str, name: str, fmt: str = "slack"):
    """The Custom Webhook block: the URL lives in its secrets only."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name=name,
        url="{{" + SECRET_KEY + "}}",
        method="POST",
        json_data=PAYLOADS[fmt],
        secrets={SECRET_KEY: url},  # pydantic coerces it to a SecretDict
    )


def install(cfg, webhook: Any = None) -> Installed:
    """Create or update the webhook block and the automation (see the module docstring).
    ``webhook``: a secret reference (``env:NAME``, ``file:/path``, ``prefect-secret:name``)
    overriding ``capacity.automation.webhook``."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    import tasks  # noqa: F401 - registers the prefect-secret resolver
    from regkeeper.config import AutomationConfig, Secret
    from regkeeper.errors import ConfigError

    configured: AutomationConfig | None = cfg.capacity.automation if cfg.capacity else None
    if webhook is not None:
        configured = (configured or AutomationConfig(webhook=webhook)).model_copy(
            update={"webhook": Secret(str(webhook), "--webhook")}
        )
    if configured is None:
        raise ConfigError(
            "no webhook for the Prefect automation: set capacity.automation.webhook in the config "
            "(e.g. capacity: {automation: {webhook: env:ALERT_WEBHOOK}}) or pass --webhook env:NAME"
        )
    auto: AutomationConfig = configured
    url = auto.webhook.get()
    block = webhook_block(url, auto.block, auto.format)
    block_id = block.save(auto.block, overwrite=True)
    spec = AutomationCore.model_validate(automation_spec(block_id, auto.name))
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(auto.name)
        if existing:
            client.update_automation(existing[0].id, spec)
            automation_id, created = existing[0].id, False
        else:
            automation_id, created = client.create_automation(spec), True
    return Installed(
        f"custom-webhook/{auto.block}", block_id, auto.name, automation_id, created, redact_url(url)
    )
