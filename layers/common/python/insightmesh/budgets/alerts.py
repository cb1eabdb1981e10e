"""Tell the admins, once per budget per period, that a budget reached its warning threshold.

Who sends: every worker that sees a budget at or above ``warn_at`` tries one conditional
``PutItem`` of the marker ``("budget-alert", "<scope>#<value>#<period key>")``
(:class:`~insightmesh.budgets.models.BudgetAlert`, ``attribute_not_exists``). Exactly one writer
wins, in any container, and only the winner posts; the others learn the alert went out and, like
the winner, remember it for the container's life (so a warned budget costs one write per
container and period, not one per request). If the winner could deliver to nobody (Slack down,
no recipient), it deletes its marker so that a later request tries again: an alert may then come
late, never twice. (A partial delivery keeps the marker: some admins were told.)

To whom: ``BUDGET_ALERT_CHANNEL`` when set (one message in that channel); otherwise a Slack DM to
every admin with a Slack id. Admins are found as the members of the system group ``all_users``
(one ``Query`` a page) read with ``BatchGetItem`` (100 a call), the same walk as the admin API's
user list: no Scan, but the cost grows with the directory (a 5,000-user workspace: ~50 Query
pages and 50 BatchGetItems), paid once per budget per period by one worker, after the check and
off the reply's critical path (below). Large workspaces should set ``BUDGET_ALERT_CHANNEL``.

Off the critical path: :func:`notify` hands the work to one background thread and returns; the
agent's LLM call (seconds) runs meanwhile, and the alert (a write and a few Slack calls) is done
well before. In Lambda a thread still running when the invocation returns is frozen with the
container and resumes with its next invocation; :func:`wait_for_alerts` lets a caller (and the
tests) wait for the pending ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PutError, PynamoDBException
from slack_sdk.errors import SlackApiError

from insightmesh.budgets.models import ALERT_SUBJECT, BudgetAlert
from insightmesh.budgets.settings import budget_settings
from insightmesh.clock import utc_now
from insightmesh.directory.models import Membership, User
from insightmesh.directory.users import ALL_USERS
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitOpenError
from insightmesh.slack.client import SlackNotConfiguredError, call_slack

_DATA_ERRORS: Final = (PynamoDBException, BotoCoreError, ClientError)
_SLACK_ERRORS: Final = (SlackApiError, CircuitOpenError, SlackNotConfiguredError, OSError)
BATCH: Final = 100
MAX_REMEMBERED: Final = 10_000


@dataclass(frozen=True)
class Alert:
    """What the admins are told: a budget, its spend in the period, and what now happens."""

    key: str  # <scope>#<value>#<period key>: the marker's range key
    text: str
    team_id: str
    spent_micros: int
    limit_micros: int
    expires_at: datetime | None = None  # the marker's TTL


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget-alerts")
_pending: set[Future[bool]] = set()
_known: set[str] = set()  # markers this container wrote or found: never tried again
_lock = threading.Lock()


def notify(alert: Alert) -> None:
    """Send ``alert`` once per budget and period (module docstring), in the background."""
    with _lock:
        if alert.key in _known:
            return
        if len(_known) >= MAX_REMEMBERED:
            _known.clear()
        _known.add(alert.key)
        future = _executor.submit(send_once, alert)
        _pending.add(future)
    future.add_done_callback(_done)


def _done(future: Future[bool]) -> None:
    with _lock:
        _pending.discard(future)


def wait_for_alerts(timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` seconds) for the alerts this container is still sending."""
    with _lock:
        pending = set(_pending)
    if pending:
        wait(pending, timeout=timeout)


def forget() -> None:
    """Forget which alerts this container already saw (tests)."""
    with _lock:
        _known.clear()


def send_once(alert: Alert) -> bool:
    """Claim the marker; if this call won it, tell the admins. True when this call sent it."""
    logger = get_logger()
    try:
        BudgetAlert(ALERT_SUBJECT, alert.key, sent_at=utc_now(), spent_micros=alert.spent_micros,
                    limit_micros=alert.limit_micros, expires_at=alert.expires_at,
                    ).save(condition=BudgetAlert.subject.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False  # someone else told them
        logger.warning("budget alert not claimed; storage error", extra={"alert": alert.key, "error": str(error)})
        _unknow(alert.key)
        return False
    except _DATA_ERRORS as error:
        logger.warning("budget alert not claimed; storage error", extra={"alert": alert.key, "error": str(error)})
        _unknow(alert.key)
        return False
    delivered = _deliver(alert)
    if delivered:
        logger.info("budget alert sent", extra={"alert": alert.key, "recipients": delivered})
        return True
    try:  # nobody was told: let a later request try again
        BudgetAlert(ALERT_SUBJECT, alert.key).delete()
    except _DATA_ERRORS as error:
        logger.warning("budget alert marker not released", extra={"alert": alert.key, "error": str(error)})
    _unknow(alert.key)
    return False


def _unknow(key: str) -> None:
    with _lock:
        _known.discard(key)


def _deliver(alert: Alert) -> int:
    """Post the alert to the channel, or DM each admin: how many posts succeeded."""
    channel = budget_settings().BUDGET_ALERT_CHANNEL
    recipients = [channel] if channel else list(_admin_slack_ids(alert.team_id))
    if not recipients:
        get_logger().warning("budget alert: no admin with a Slack id and no BUDGET_ALERT_CHANNEL",
                             extra={"alert": alert.key})
    delivered = 0
    for recipient in recipients:
        try:
            _post(recipient, alert.text)
            delivered += 1
        except _SLACK_ERRORS as error:
            get_logger().warning("budget alert not posted", extra={"alert": alert.key, "error": str(error)})
    return delivered


def _post(channel: str, text: str) -> None:
    call_slack(lambda client: client.chat_postMessage(channel=channel, text=text))


def _admin_slack_ids(team_id: str) -> Iterator[str]:
    """The Slack ids (in ``team_id``, else any workspace's) of the active admins (module docstring)."""
    try:
        last_key = None
        while True:
            page = Membership.query(ALL_USERS, limit=BATCH, last_evaluated_key=last_key,
                                    attributes_to_get=["group_name", "user_id"])
            user_ids = [str(membership.user_id) for membership in page]
            for user in User.batch_get(user_ids):
                slack_ids = dict(user.slack_ids or {})
                slack_id = slack_ids.get(team_id) or next(iter(slack_ids.values()), None)
                if user.is_admin and user.is_active and slack_id:
                    yield slack_id
            last_key = page.last_evaluated_key
            if not last_key:
                return
    except _DATA_ERRORS as error:
        get_logger().warning("budget alert: admins not read", extra={"error": str(error)})
