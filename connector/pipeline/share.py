"""The group's rate cap, shared out: with ``http.rate_limit.scope: group`` each member
may send the cap * (partitions it owns / partitions of its subscribed topics),
recomputed on every rebalance, so N members together stay under the cap. Shares follow
partition counts, not traffic: a member with a hot partition gets no more than its
count's share (``scope: process`` with per-process caps is the way out)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from connector.adapters.rate_limit import RateLimiter

log = logging.getLogger(__name__)


class GroupShare:
    def __init__(
        self,
        limiter: RateLimiter,
        topics: Sequence[str],
        partition_count: Callable[[Sequence[str]], Awaitable[int | None]],
    ) -> None:
        self._limiter = limiter
        self._topics = list(topics)
        self._partition_count = partition_count

    async def rebalanced(self, owned: int) -> None:
        """The checkpoint's listener: ``owned`` partitions are this member's now."""
        if owned == 0:
            return  # nothing of ours to send; the share comes with the next assignment
        total = await self._partition_count(self._topics)
        if total is None or total == 0:
            log.warning(
                "rate limit: the partition count of %s is unknown (brokers away?); "
                "keeping this member's share at %.3f of the cap",
                ", ".join(self._topics),
                self._limiter.share,
            )
            return
        share = min(1.0, owned / total)
        if share != self._limiter.share:
            self._limiter.set_share(share)
            log.info(
                "rate limit: this member owns %d of %d partitions, so it sends %.1f%% of the cap",
                owned,
                total,
                100 * share,
            )
