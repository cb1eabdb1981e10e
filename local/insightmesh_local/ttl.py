"""DynamoDB Time to Live, locally: moto records the TTL setting but never deletes expired items.

Every ``interval`` seconds each table with TTL enabled is swept: items whose TTL attribute is a
number of epoch seconds in the past are deleted, as DynamoDB's background process does (which in
AWS may lag by up to a few days; here it lags by at most ``interval``). A Scan is fine here: this
is the emulator's housekeeping, not a request path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class TtlSweeper:
    def __init__(self, dynamodb: Any, log: Callable[[str], None], stop: threading.Event, *,
                 interval: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.dynamodb = dynamodb
        self.log = log
        self.stop = stop
        self.interval = interval
        self.clock = clock
        self.deleted = 0
        self._thread = threading.Thread(target=self.run, name="ttl", daemon=True)

    def ttl_tables(self) -> dict[str, str]:
        tables: dict[str, str] = {}
        for page in self.dynamodb.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                description = self.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
                    tables[name] = description["AttributeName"]
        return tables

    def sweep(self) -> int:
        """Delete every expired item now; returns how many were deleted."""
        now = int(self.clock())
        deleted = 0
        for table, attribute in self.ttl_tables().items():
            keys = [k["AttributeName"] for k in self.dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
            paginator = self.dynamodb.get_paginator("scan")
            pages = paginator.paginate(
                TableName=table,
                FilterExpression="#ttl < :now",
                ExpressionAttributeNames={"#ttl": attribute},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
            for page in pages:
                for item in page.get("Items", []):
                    self.dynamodb.delete_item(TableName=table, Key={key: item[key] for key in keys})
                    deleted += 1
        if deleted:
            self.deleted += deleted
            self.log(f"ttl: deleted {deleted} expired item(s)")
        return deleted

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.sweep()
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                self.log(f"ttl: {error}")

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)
