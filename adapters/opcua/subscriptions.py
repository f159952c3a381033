"""Subscribe mode: monitored items spread over subscriptions, publish responses -> readings.

* Items are split over subscriptions of at most ``max_items_per_subscription`` and created
  in batched CreateMonitoredItems requests (sampling interval = ``interval``, queue 5,
  discard oldest, source and server timestamps). Items the server refuses with
  ``BadTooManyMonitoredItems`` move to a new subscription and the smaller capacity is
  learned (logged once); items refused for another reason (unknown node...) read ``bad``.
* Publishing interval = ``interval``, keep-alive count 1: an idle subscription still
  answers every interval, which confirms its unchanged values (re-asserted by
  :meth:`SubscriptionSet.tick` with the time of that answer; see adapters/opcua/values.py).
* The publish responses come through asyncua's publish loop straight into
  :meth:`_Group.on_publish` (one callback per response, no task or queue per item); the
  callback awaits ``emit``, so a full pipeline holds the publish loop and the server keeps
  the newest values (its per-item queue discards the oldest).
* A subscription that sends nothing for two keep-alive periods plus ``timeout``, or that
  the server reports closed (StatusChangeNotification), ends the session: the adapter
  reconnects and builds everything anew.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from adapters.opcua.batching import BatchLimit, in_batches, status_name
from adapters.opcua.values import PointTable
from gateway.core.models import Reading

log = logging.getLogger("adapters.opcua")

QUEUE_SIZE = 5
Emit = Callable[[list[Reading]], Awaitable[None]]
Lost = Callable[[str], None]


@dataclass
class _Group:
    """One subscription and the points it carries."""

    owner: SubscriptionSet
    sub_id: int = 0
    indexes: list[int] = field(default_factory=list)
    interval: float = 1.0  # revised publishing interval, s
    keepalive: int = 1  # revised max keep-alive count
    last_publish: float = 0.0  # monotonic
    last_publish_ns: int = 0  # wall clock of the last publish response
    busy: int = 0  # callbacks awaiting emit

    @property
    def window(self) -> float:
        return 2.0 * self.interval * self.keepalive + self.owner.timeout

    async def on_publish(self, result: ua.PublishResult) -> None:
        try:
            await self._on_publish(result)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not go unnoticed (asyncua would only log it)
            log.exception("opcua %s: processing a publish response failed; reconnecting", self.owner.source)
            self.owner.lost("internal error processing a publish response")

    async def _on_publish(self, result: ua.PublishResult) -> None:
        owner = self.owner
        recv = time.time_ns()
        self.last_publish = time.monotonic()
        self.last_publish_ns = recv
        msg = result.NotificationMessage
        data = msg.NotificationData if msg is not None else None
        if not data:
            owner.keepalives += 1
            return
        table = owner.table
        update = table.update
        n = len(table)
        batch: list[Reading] = []
        for nd in data:
            if isinstance(nd, ua.DataChangeNotification):
                for item in nd.MonitoredItems:
                    i = item.ClientHandle
                    if 0 <= i < n:
                        batch.append(update(i, item.Value, recv))
            elif isinstance(nd, ua.StatusChangeNotification):
                code = nd.Status.value if nd.Status is not None else 0
                if code >> 30:  # not Good: the subscription is gone (BadTimeout, BadShutdown...)
                    owner.lost(f"subscription {self.sub_id} closed by the server ({status_name(code)})")
        owner.datas += 1
        owner.items += len(batch)
        if batch:
            self.busy += 1
            try:
                await owner.emit(batch)
            finally:
                self.busy -= 1


class SubscriptionSet:
    """The subscriptions of one session."""

    def __init__(
        self,
        source: str,
        client: Client,
        table: PointTable,
        *,
        interval: float,
        timeout: float,
        capacity: int,
        limit: BatchLimit,
        emit: Emit,
        lost: Lost,
    ) -> None:
        self.source = source
        self.client = client
        self.table = table
        self.interval = interval
        self.timeout = timeout
        self.capacity = capacity  # items per subscription (learned down from the config's maximum)
        self.limit = limit
        self.emit = emit
        self.lost = lost
        self.groups: list[_Group] = []
        self.refused: dict[int, str] = {}  # point index -> why the server refused its item
        self.keepalives = 0
        self.datas = 0
        self.items = 0

    async def build(self, items: Sequence[tuple[int, ua.NodeId]]) -> None:
        """Subscriptions and monitored items for ``items`` (point index, node id)."""
        pending = list(items)
        while pending:
            take, pending = pending[: self.capacity], pending[self.capacity :]
            try:
                group = await self._new_group()
            except UaStatusCodeError as e:
                why = f"no subscription for it ({status_name(e.code)})"
                for i, _ in [*take, *pending]:
                    self.refused[i] = why
                log.error("opcua %s: server refused a new subscription (%s); %d points read bad", self.source,
                          status_name(e.code), len(take) + len(pending))
                return
            accepted, overflow = await self._add_items(group, take)
            if overflow:
                if not accepted:
                    for i, _ in [*overflow, *pending]:
                        self.refused[i] = "the server accepts no more monitored items (BadTooManyMonitoredItems)"
                    log.error("opcua %s: server accepts no more monitored items; %d points read bad",
                              self.source, len(overflow) + len(pending))
                    return
                if accepted < self.capacity:
                    log.warning("opcua %s: server takes %d monitored items per subscription; using %d "
                                "(max_items_per_subscription: %d)", self.source, accepted, accepted, self.capacity)
                    self.capacity = accepted
                pending = overflow + pending

    async def _new_group(self) -> _Group:
        interval_ms = self.interval * 1000.0
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = interval_ms
        params.RequestedMaxKeepAliveCount = 1
        # the server deletes the subscription after this many intervals without a publish request
        params.RequestedLifetimeCount = max(10, math.ceil(max(120.0, 12 * self.timeout) / self.interval))
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        group = _Group(self)
        res = await self.client.uaclient.create_subscription(params, group.on_publish)
        group.sub_id = res.SubscriptionId
        group.interval = (res.RevisedPublishingInterval or interval_ms) / 1000.0
        group.keepalive = max(1, int(res.RevisedMaxKeepAliveCount or 1))
        group.last_publish = time.monotonic()
        group.last_publish_ns = time.time_ns()
        self.groups.append(group)
        return group

    async def _add_items(
        self, group: _Group, items: Sequence[tuple[int, ua.NodeId]]
    ) -> tuple[int, list[tuple[int, ua.NodeId]]]:
        """Create the items in ``group``: (number accepted, items refused for capacity)."""
        interval_ms = self.interval * 1000.0

        async def call(batch: Sequence[tuple[int, ua.NodeId]]) -> list[ua.MonitoredItemCreateResult]:
            reqs = []
            for i, nid in batch:
                mp = ua.MonitoringParameters()
                mp.ClientHandle = i
                mp.SamplingInterval = interval_ms
                mp.QueueSize = QUEUE_SIZE
                mp.DiscardOldest = True
                r = ua.MonitoredItemCreateRequest()
                r.ItemToMonitor = ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value)
                r.MonitoringMode = ua.MonitoringMode.Reporting
                r.RequestedParameters = mp
                reqs.append(r)
            p = ua.CreateMonitoredItemsParameters()
            p.SubscriptionId = group.sub_id
            p.TimestampsToReturn = ua.TimestampsToReturn.Both
            p.ItemsToCreate = reqs
            return list(await self.client.uaclient.create_monitored_items(p))

        results = await in_batches(list(items), self.limit, call)
        overflow: list[tuple[int, ua.NodeId]] = []
        accepted = 0
        for (i, nid), res in zip(items, results, strict=True):
            code = res.StatusCode.value if res.StatusCode is not None else 0
            if code >> 30 == 0:
                group.indexes.append(i)
                accepted += 1
            elif code == ua.StatusCodes.BadTooManyMonitoredItems:
                overflow.append((i, nid))
            else:
                self.refused[i] = f"monitored item refused ({status_name(code)})"
        return accepted, overflow

    def tick(self, now_mono: float) -> list[Reading]:
        """Re-assert the unchanged values of every live subscription (with the time of its
        latest publish response); report a silent subscription as lost."""
        out: list[Reading] = []
        for g in self.groups:
            if g.busy:
                continue  # held by pipeline backpressure, not by the server
            age = now_mono - g.last_publish
            if age > g.window:
                self.lost(f"subscription {g.sub_id} sent nothing for {age:.1f} s "
                          f"(keep-alive expected every {g.interval * g.keepalive:g} s)")
                return []
            out.extend(self.table.reassert(g.indexes, g.last_publish_ns))
        return out

    def health(self) -> dict[str, object]:
        return {
            "subscriptions": [
                {"id": g.sub_id, "items": len(g.indexes), "publishing_interval_s": g.interval,
                 "keepalive_count": g.keepalive}
                for g in self.groups
            ],
            "items_per_subscription": self.capacity,
            "publish_responses": {"data": self.datas, "keepalive": self.keepalives},
        }
