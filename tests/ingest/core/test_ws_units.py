"""The pieces behind /ws: the per-socket outbox policy, the running-node tracker, the queue counts."""

from __future__ import annotations

import asyncio
import uuid

from comfy_cloud.broadcast.events import JOB_STATUS, JobEvent
from services.ingest.ws.hub import QueueCounts, RunningNodes
from services.ingest.ws.outbox import HARD_FACTOR, PREVIEW_RANK, PROGRESS_RANK, Frame, Outbox


def preview(tag: str) -> Frame:
    return Frame(data=tag.encode(), rank=PREVIEW_RANK)


def progress(tag: str) -> Frame:
    return Frame(text=tag, rank=PROGRESS_RANK)


def message(tag: str) -> Frame:
    return Frame(text=tag)


async def drain(outbox: Outbox) -> list[str]:
    out = []
    while len(outbox):
        frame = await outbox.get()
        out.append(frame.text if frame.text is not None else (frame.data or b"").decode())
    return out


async def test_previews_go_first_then_progress() -> None:
    outbox = Outbox(max_frames=4, max_bytes=10**6)
    for frame in (preview("p1"), progress("g1"), message("m1"), preview("p2")):
        assert outbox.put(frame)
    assert outbox.put(message("m2"))  # full: the oldest preview makes room
    assert outbox.put(message("m3"))  # then the next preview
    assert outbox.put(progress("g2"))  # a progress update replaces the older one
    assert await drain(outbox) == ["m1", "m2", "m3", "g2"]
    assert outbox.dropped == 3


async def test_an_incoming_preview_is_dropped_rather_than_progress() -> None:
    outbox = Outbox(max_frames=2, max_bytes=10**6)
    assert outbox.put(progress("g1")) and outbox.put(message("m1"))
    assert outbox.put(preview("p1"))  # accepted but dropped: everything queued is worth more
    assert await drain(outbox) == ["g1", "m1"]
    assert outbox.dropped == 1


async def test_non_droppable_frames_grow_to_the_hard_bound() -> None:
    outbox = Outbox(max_frames=2, max_bytes=10**6)
    for i in range(2 * HARD_FACTOR):
        assert outbox.put(message(f"m{i}")), i
    assert not outbox.put(message("one too many"))
    assert len(outbox) == 2 * HARD_FACTOR


async def test_byte_bound_drops_big_previews() -> None:
    outbox = Outbox(max_frames=100, max_bytes=1000)
    assert outbox.put(Frame(data=b"x" * 900, rank=PREVIEW_RANK))
    assert outbox.put(message("m" * 200))  # over the soft byte bound: the preview goes
    assert await drain(outbox) == ["m" * 200]


async def test_front_and_waiting_get() -> None:
    outbox = Outbox(max_frames=10, max_bytes=10**6)
    getter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    outbox.put(message("later"))
    assert (await getter).text == "later"
    outbox.put(message("b"))
    outbox.put(message("a"), front=True)
    assert await drain(outbox) == ["a", "b"]


async def test_a_queued_status_frame_is_superseded_by_the_next() -> None:
    outbox = Outbox(max_frames=4, max_bytes=10**6)
    counts = [asyncio.get_running_loop().create_future() for _ in range(3)]
    for i, count in enumerate(counts):
        count.set_result(i)
    assert outbox.put(Frame(status=counts[0])) and outbox.put(message("m1"))
    for count in counts[1:]:
        assert outbox.put(Frame(status=count))  # a burst: only the newest count is worth sending
    for i in range(2 * HARD_FACTOR):  # superseded frames take no room
        assert outbox.put(message(f"x{i}")), i
    first = await outbox.get()
    assert first.text == "m1"
    latest = await outbox.get()
    assert latest.status is counts[2]
    assert outbox.put(Frame(status=counts[0]))  # the sent one is not superseded again
    assert [(await outbox.get()).text for _ in range(2 * HARD_FACTOR)] == [
        f"x{i}" for i in range(2 * HARD_FACTOR)
    ]
    assert (await outbox.get()).status is counts[0]
    assert len(outbox) == 0


def test_running_nodes() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    nodes = RunningNodes()

    def ev(user: uuid.UUID, job: str, kind: str, **data: object) -> None:
        nodes.observe(JobEvent(user_id=str(user), job_id=job, type=kind, data=dict(data)))

    ev(alice, "j1", "executing", node="5", display_node="12:5", prompt_id="j1")
    ev(alice, "j2", "executing", node="3", prompt_id="j2")
    ev(bob, "j3", "executing", node="1", prompt_id="j3")
    assert nodes.of_user(alice, {"j1", "j2"}) == ["12:5", "3"]  # the display node, as ComfyUI replays
    ev(alice, "j1", "executing", node=None, prompt_id="j1")
    ev(alice, "j2", JOB_STATUS, status="cancelled")
    assert nodes.of_user(alice, {"j1", "j2"}) == []
    assert nodes.of_user(bob, set()) == []  # no longer active: forgotten
    assert nodes.of_user(bob, {"j3"}) == []


async def test_queue_counts_are_reused_only_by_events_that_cannot_change_them() -> None:
    reads = 0

    async def count(_user: uuid.UUID) -> int:
        nonlocal reads
        reads += 1
        return reads

    counts = QueueCounts(count)
    user = uuid.uuid4()
    first = counts.request(user)  # e.g. a job submitted: read after the event
    assert await first == 1
    assert counts.request(user, fresh=False) is first  # e.g. a job started: the count is unchanged
    assert await counts.request(user) == 2  # e.g. a job finished: read again
    counts.forget(user)  # the user's last socket left: events are no longer watched
    assert await counts.request(user, fresh=False) == 3
    counts.REUSE_SECONDS = 0.0  # past the bound, even a neutral event reads again
    await asyncio.sleep(0.01)
    assert await counts.request(user, fresh=False) == 4
