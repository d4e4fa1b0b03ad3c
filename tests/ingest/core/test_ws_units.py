"""The pieces behind /ws: the per-socket outbox policy and the running-node tracker."""

from __future__ import annotations

import asyncio
import uuid

from comfy_cloud.broadcast.events import JOB_STATUS, JobEvent
from services.ingest.ws.hub import RunningNodes
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


def test_running_nodes() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    nodes = RunningNodes()

    def ev(user: uuid.UUID, job: str, kind: str, **data: object) -> None:
        nodes.observe(user, JobEvent(user_id=str(user), job_id=job, type=kind, data=dict(data)))

    ev(alice, "j1", "executing", node="5", display_node="12:5", prompt_id="j1")
    ev(alice, "j2", "executing", node="3", prompt_id="j2")
    ev(bob, "j3", "executing", node="1", prompt_id="j3")
    assert nodes.of_user(alice, {"j1", "j2"}) == ["12:5", "3"]  # the display node, as ComfyUI replays
    ev(alice, "j1", "executing", node=None, prompt_id="j1")
    ev(alice, "j2", JOB_STATUS, status="cancelled")
    assert nodes.of_user(alice, {"j1", "j2"}) == []
    assert nodes.of_user(bob, set()) == []  # no longer active: forgotten
    assert nodes.of_user(bob, {"j3"}) == []
