"""The process's one broadcaster listener, fanned out to every socket of each event's owner.

Events are routed by `user_id` only: every socket of the job's owner receives them, whatever its
clientId (client ids are chosen by clients and prove nothing); no other user's socket ever does. Each
event becomes ComfyUI's wire format once per variant (JSON text, binary preview type 1 or 4, progress
text type 3) and is queued on each socket's outbox, so a slow socket only ever delays itself.
`status` (ComfyUI's, relayed from a worker, or our `cc.job_status`) is rewritten with the owner's own
queue count, shared by all of that user's sockets (and by the events that cannot change it: see
QueueCounts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, PROGRESS_TEXT, JobEvent
from comfy_cloud.comfyui.frames import encode_preview, encode_preview_with_metadata, encode_progress_text
from database.job_states import ACTIVE_STATUSES, TERMINAL_STATUSES
from services.ingest.ws.client import GOING_AWAY_CODE, Client
from services.ingest.ws.outbox import PREVIEW_RANK, PROGRESS_RANK, Frame

log = logging.getLogger(__name__)

QueueCounter = Callable[[uuid.UUID], Awaitable[int]]
_PROGRESS_TYPES = frozenset({"progress", "progress_state"})
_END_TYPES = frozenset({"execution_success", "execution_error", "execution_interrupted"})
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
# A job moving into these came from a counted state: the owner's queue count is unchanged.
_COUNT_NEUTRAL = frozenset(s.value for s in ACTIVE_STATUSES)
MAX_TRACKED_JOBS = 100_000


class RunningNodes:
    """The node each running job executes now, for the `executing` replay on connect."""

    def __init__(self) -> None:
        self._nodes: OrderedDict[str, tuple[str, str]] = OrderedDict()  # job -> (owner, node)

    def observe(self, event: JobEvent) -> None:
        if event.type == "executing":
            node = event.data.get("display_node") or event.data.get("node")
            if node is None:
                self._nodes.pop(event.job_id, None)
            else:
                self._nodes[event.job_id] = (event.user_id, str(node))
                self._nodes.move_to_end(event.job_id)
                while len(self._nodes) > MAX_TRACKED_JOBS:
                    self._nodes.popitem(last=False)
        elif event.type in _END_TYPES or (event.type == JOB_STATUS and event.data.get("status") in _TERMINAL):
            self._nodes.pop(event.job_id, None)

    def of_user(self, user_id: uuid.UUID, active: set[str]) -> list[str]:
        """Nodes of the user's jobs that are still active (stale entries are forgotten)."""
        nodes = []
        owner_id = str(user_id)
        for job_id, (owner, node) in list(self._nodes.items()):
            if owner != owner_id:
                continue
            if job_id in active:
                nodes.append(node)
            else:
                del self._nodes[job_id]
        return nodes


class QueueCounts:
    """Queue counts for `status` frames, shared by the events that arrive while one waits to start.

    A status frame must carry a count read after the last event that may have changed the count. A
    count requested while another one of the same user is still running cannot reuse that one: it
    waits for it, then runs, and every request made meanwhile shares it (the count it reads is as
    fresh as theirs would have been). A burst of status events thus costs one or two queries per user
    instead of one each, which is what kept the socket writers, waiting on counts, from keeping up
    under load.

    Most status events cannot change the count: a job that moves between counted states (assigned,
    in_progress, cancelling) leaves it as it was. Those reuse the latest count requested (`fresh`
    false), so a job costs two counts (submitted, finished) rather than one per status change. The
    reuse is bounded by REUSE_SECONDS: a changing event lost in a broadcast outage stays wrong no
    longer than that once status events flow again.
    """

    REUSE_SECONDS = 1.0

    def __init__(self, count: QueueCounter) -> None:
        self._count = count
        self._waiting: dict[uuid.UUID, asyncio.Future[int]] = {}  # not started yet: joinable
        self._running: dict[uuid.UUID, asyncio.Future[int]] = {}
        self._latest: dict[uuid.UUID, tuple[float, asyncio.Future[int]]] = {}  # requested at, count
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, user_id: uuid.UUID, *, fresh: bool = True) -> asyncio.Future[int]:
        """A count read after this call; unless `fresh`, the latest one requested may serve instead."""
        loop = asyncio.get_running_loop()
        if not fresh:
            latest = self._reusable(user_id, loop.time())
            if latest is not None:
                return latest
        waiting = self._waiting.get(user_id)
        if waiting is not None:
            return waiting
        result: asyncio.Future[int] = loop.create_future()
        result.add_done_callback(_consume_exception)
        self._waiting[user_id] = result
        self._latest[user_id] = (loop.time(), result)
        task = asyncio.ensure_future(self._run(user_id, result, self._running.get(user_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return result

    def forget(self, user_id: uuid.UUID) -> None:
        """The user has no socket left: events are no longer watched, so the latest count may go stale."""
        self._latest.pop(user_id, None)

    def _reusable(self, user_id: uuid.UUID, now: float) -> asyncio.Future[int] | None:
        entry = self._latest.get(user_id)
        if entry is None:
            return None
        requested_at, latest = entry
        if now - requested_at > self.REUSE_SECONDS or (latest.done() and _failed(latest)):
            return None
        return latest

    async def _run(
        self, user_id: uuid.UUID, result: asyncio.Future[int], before: asyncio.Future[int] | None
    ) -> None:
        if before is not None:
            await asyncio.wait([before])  # its outcome is its requesters' business
        # From here on the count reads the database: later requests need one of their own.
        self._waiting.pop(user_id, None)
        self._running[user_id] = result
        try:
            count = await self._count(user_id)
        except Exception as exc:
            if not result.done():
                result.set_exception(exc)
        except BaseException:
            result.cancel()
            raise
        else:
            if not result.done():
                result.set_result(count)
        finally:
            if self._running.get(user_id) is result:
                del self._running[user_id]


class _Variants:
    """The wire forms of one event, each built at most once however many sockets receive it."""

    def __init__(self, event: JobEvent, count: Callable[[], asyncio.Future[int]]) -> None:
        self.event = event
        self._count = count
        self._cache: dict[str, Frame | None] = {}

    def for_client(self, client: Client) -> Frame | None:
        kind = self.event.type
        if kind == PREVIEW:
            key = "preview4" if client.supports_preview_metadata else "preview1"
        else:
            key = kind
        if key not in self._cache:
            self._cache[key] = self._build(key)
        return self._cache[key]

    def _build(self, key: str) -> Frame | None:
        event = self.event
        if key in ("status", JOB_STATUS):
            return Frame(status=self._count())
        if key == "preview4":
            metadata = dict(event.data)  # ComfyUI's metadata, in its key order
            metadata.setdefault("prompt_id", event.job_id)
            metadata.setdefault("image_type", "image/jpeg")
            return Frame(data=encode_preview_with_metadata(event.blob or b"", metadata), rank=PREVIEW_RANK)
        if key == "preview1":
            image_type = str(event.data.get("image_type") or "image/jpeg")
            return Frame(data=encode_preview(event.blob or b"", image_type), rank=PREVIEW_RANK)
        if key == PROGRESS_TEXT:
            text = (event.blob or b"").decode("utf-8", errors="replace")
            return Frame(
                data=encode_progress_text(str(event.data.get("node_id", "")), text), rank=PROGRESS_RANK
            )
        if key.startswith("cc."):
            return None  # internal notices never reach clients
        rank = PROGRESS_RANK if key in _PROGRESS_TYPES else None
        return Frame(text=json.dumps({"type": key, "data": event.data}), rank=rank)


class Hub:
    def __init__(self, broadcaster: Broadcaster, count_queue: QueueCounter) -> None:
        self.broadcaster = broadcaster
        self.count_queue = count_queue
        self.counts = QueueCounts(count_queue)
        self.running = RunningNodes()
        self._clients: dict[str, set[Client]] = {}  # by str(user id), as events carry it
        self._stop_listening: Callable[[], None] | None = None
        self.delivered = 0  # events that reached at least one socket (tests, metrics)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # A listener, not a subscription: dispatch() only queues frames, so it runs as each event
        # arrives, without a queue and a task switch per event in between.
        self._stop_listening = self.broadcaster.listen(self.dispatch)

    async def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        for clients in list(self._clients.values()):
            for client in list(clients):
                client.close_code = GOING_AWAY_CODE
                client.stuck.set()  # ends the socket's handler

    # -- sockets -------------------------------------------------------------------------------------

    def register(self, client: Client) -> None:
        self._clients.setdefault(str(client.user_id), set()).add(client)

    def unregister(self, client: Client) -> None:
        owner = str(client.user_id)
        clients = self._clients.get(owner)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._clients[owner]
                self.counts.forget(client.user_id)

    def sockets_of(self, user_id: uuid.UUID) -> int:
        return len(self._clients.get(str(user_id), ()))

    # -- events --------------------------------------------------------------------------------------

    def dispatch(self, event: JobEvent) -> None:
        # Routed by the owner's id as published (str(UUID)): no parsing per event.
        self.running.observe(event)
        clients = self._clients.get(event.user_id)
        if not clients:
            return
        count: asyncio.Future[int] | None = None

        def shared_count() -> asyncio.Future[int]:
            nonlocal count
            if count is None:
                count = self.counts.request(uuid.UUID(event.user_id), fresh=_may_change_count(event))
            return count

        variants = _Variants(event, shared_count)
        for client in list(clients):
            frame = variants.for_client(client)
            if frame is not None:
                client.offer(frame)
        self.delivered += 1


def _may_change_count(event: JobEvent) -> bool:
    return not (event.type == JOB_STATUS and event.data.get("status") in _COUNT_NEUTRAL)


def _failed(future: asyncio.Future[int]) -> bool:
    return future.cancelled() or future.exception() is not None


def _consume_exception(future: asyncio.Future[int]) -> None:
    # Sockets that take the count log its failure; this only keeps asyncio from warning when none did.
    if not future.cancelled():
        future.exception()
