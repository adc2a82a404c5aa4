"""Auctions: which host runs a start, asked of the lattice.

For each start the executor auctions under the entity's affinity rules; the bid window ends
as soon as every known host has answered (bid or decline), else at ``bid_timeout`` (250 ms
by default; wasmCloud's control client waits a fixed 5 s). The winner is the least-loaded
bidder, preferring hosts that do not already run a sibling replica. Actor starts under the
same rules share one auction per pass (:meth:`Auctioneer.deal`): every host answers once,
and the starts are dealt out over the bidders by load. A thousand starts on a thousand
hosts cost a thousand replies, not a million. A shared auction's window grows with the
lattice (:func:`deal_window`: 10,000 hosts are 10,000 replies to read, and the auction
still ends as soon as every known host answered). An entity no host will take is
:class:`Unplaceable`, with the hosts' decline reasons (or none, when no host answered:
the executor retries both as soon as a host joins).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable

from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice.natsutil import scatter_gather
from lattice.protocol import AuctionReply, AuctionRequest, Subjects, decode, encode
from reconciler import actions as A
from reconciler.errors import Unplaceable
from reconciler.metrics import auction_done
from reconciler.observed import ObservedState

Dealt = str | Unplaceable


class Auctioneer:
    """Runs auctions for one executor; ``pending`` counts what this pass already placed
    on each host, so concurrent auctions spread (cleared by the executor per pass)."""

    def __init__(self, nc: Client, subjects: Subjects, observed: ObservedState, *,
                 bid_timeout: float) -> None:
        self.nc = nc
        self.subjects = subjects
        self.observed = observed
        self.bid_timeout = bid_timeout
        self.pending: Counter[str] = Counter()

    async def deal(self, starts: list[A.StartActor]) -> dict[str, Dealt]:
        """One auction per affinity rule set shared by several starts; each start gets
        the least loaded bidder, hosts of sibling replicas (same deployment and actor)
        last. Returns start key -> host, or the error to raise for that start; a lone
        start under its rules is left out (its own :meth:`auction` may end early)."""
        dealt: dict[str, Dealt] = {}
        groups: dict[tuple[str, ...], list[A.StartActor]] = {}
        for act in starts:
            groups.setdefault(act.constraints, []).append(act)
        for constraints, acts in groups.items():
            if len(acts) < 2:
                continue  # a lone start has its own auction, which may end early
            req = AuctionRequest(kind="actor", actor_id=acts[0].actor_id,
                                 constraints=list(constraints))
            known, started = len(self.observed), time.perf_counter()
            msgs = await scatter_gather(self.nc, self.subjects.auction("actor"), encode(req),
                                        timeout=deal_window(self.bid_timeout, known),
                                        max_replies=known or None)
            replies = [r for m in msgs
                       if (r := decode(AuctionReply, m.data, subject=m.subject)) is not None
                       and r.auction_id == req.auction_id]
            load = {r.host_id: r.load for r in replies if r.bid}
            auction_done("actor", started, len(load))
            if not load:
                why = decline_message(constraints, replies)
                for act in acts:
                    dealt[act.key] = Unplaceable(why)
                continue
            siblings: dict[tuple[str, str], set[str]] = {}
            pending = self.pending
            heap = [(n + pending[h], h) for h, n in load.items()]
            heapq.heapify(heap)
            for act in acts:
                near = siblings.setdefault((act.deployment, act.actor_id), set(act.avoid_hosts))
                skipped = []
                while heap and heap[0][1] in near:
                    skipped.append(heapq.heappop(heap))
                weight, host = heapq.heappop(heap) if heap else skipped.pop(0)
                for item in skipped:
                    heapq.heappush(heap, item)
                heapq.heappush(heap, (weight + 1, host))
                pending[host] += 1
                near.add(host)
                dealt[act.key] = host
        return dealt

    async def auction(self, req: AuctionRequest, *, avoid: set[str],
                      exclude: set[str] | None = None) -> str:
        """The host to run ``req``: the least loaded bidder (outside ``avoid`` if any),
        never one in ``exclude`` (hosts at the entity's ``max_per_host``: their bids do
        not count).

        The auction ends when every known host answered, after ``bid_timeout``, or as soon
        as a bid that cannot be beaten is in: an idle host (no load, none pending from this
        pass) outside ``avoid``. On a big, mostly idle lattice that is the first answer,
        so the other thousand need not be decoded. Declines are kept to explain a
        failure. No answer at all (an empty lattice, or hosts too busy) is unplaceable
        too: like a decline, it is retried as soon as a host joins or changes."""
        known, started = len(self.observed), time.perf_counter()
        replies: list[AuctionReply] = []
        seen = 0
        pending = self.pending
        excluded = exclude or set()

        chosen: list[str] = []

        def unbeatable(msgs: list[Msg]) -> bool:
            nonlocal seen
            for m in msgs[seen:]:
                r = decode(AuctionReply, m.data, subject=m.subject)
                if r is None or r.auction_id != req.auction_id:
                    continue
                if r.host_id in excluded and r.bid:
                    r = r.model_copy(update={"bid": False,
                                             "reason": "at the entity's max_per_host"})
                replies.append(r)
                if (not chosen and r.bid and r.load == 0 and not pending[r.host_id]
                        and r.host_id not in avoid):
                    chosen.append(r.host_id)
                    pending[r.host_id] += 1  # at once: concurrent auctions see it taken
            seen = len(msgs)
            return bool(chosen)

        msgs = await scatter_gather(
            self.nc, self.subjects.auction(req.kind), encode(req),
            timeout=self.bid_timeout, max_replies=known or None, done=unbeatable,
        )
        unbeatable(msgs)  # replies that arrived with the last one
        auction_done(req.kind, started, sum(r.bid for r in replies))
        if chosen:
            return chosen[0]
        bids = [r for r in replies if r.bid]
        if not bids:
            raise Unplaceable(decline_message(req.constraints, replies))
        best = min(bids, key=lambda r: (
            r.host_id in avoid, r.load + self.pending[r.host_id], r.host_id))
        self.pending[best.host_id] += 1
        return best.host_id


#: hosts whose replies one ``bid_timeout`` is made for; a shared auction on a bigger
#: lattice waits proportionally longer (at most :data:`MAX_DEAL_WINDOW`)
HOSTS_PER_WINDOW = 2500
MAX_DEAL_WINDOW = 2.0


def deal_window(bid_timeout: float, known: int) -> float:
    """The bid window of a shared auction among ``known`` hosts: ``bid_timeout`` up to
    :data:`HOSTS_PER_WINDOW` hosts, growing with the number of hosts, capped at
    :data:`MAX_DEAL_WINDOW` (never below ``bid_timeout``). At 10,000 hosts on 2 cores,
    250 ms saw no reply at all: every start came back unplaced twice (measured in
    bench_scale, issue 15). Pure."""
    scaled = bid_timeout * known / HOSTS_PER_WINDOW
    return max(bid_timeout, min(scaled, MAX_DEAL_WINDOW))


def decline_message(constraints: Iterable[str], replies: list[AuctionReply]) -> str:
    """E.g. ``no host satisfies leds=12: 3 hosts declined: label leds missing``."""
    rules = ", ".join(constraints) or "(no affinity rules)"
    if not replies:
        return f"no host satisfies {rules}: no host answered the auction"
    reasons = Counter(r.reason or "declined" for r in replies)
    parts = [f"{n} host{'s' if n > 1 else ''} declined: {why}"
             for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    return f"no host satisfies {rules}: " + "; ".join(parts)
