"""GET /metrics in Prometheus format, and the queue statistics."""

from __future__ import annotations

from tests.database.helpers import make_catalogue, make_jobs, make_user
from tests.dispatcher.conftest import Env, RunningDispatcher, eventually


async def _sample(dispatcher: RunningDispatcher, name: str) -> float:
    return (await dispatcher.metrics()).get(name, 0.0)


async def test_metrics_count_dispatches_waits_and_run_times(env: Env) -> None:
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher, capacity=2, auto_complete=True)
    user = await make_user(env.db)
    await make_jobs(env.db, user, 3, fake.catalogue)
    other = await make_catalogue(env.db, {"Nothing": {}})
    await make_jobs(env.db, user, 2, other)  # runnable only where no instance is
    await eventually(
        lambda: _sample_is(dispatcher, 'cc_dispatcher_execution_seconds_count{status="completed"}', 3),
        message="three run times",
    )
    m = await dispatcher.metrics()
    assert m["cc_dispatcher_jobs_dispatched_total"] == 3
    assert m["cc_dispatcher_submit_to_start_seconds_count"] == 3
    assert m['cc_dispatcher_queue_depth{status="pending"}'] == 2
    assert m['cc_dispatcher_queue_depth{status="in_progress"}'] == 0
    assert m["cc_dispatcher_jobs_waiting_for_capability"] == 2
    assert m['cc_dispatcher_instances{state="live"}'] == 1
    assert m["cc_dispatcher_pass_seconds_count"] >= 1
    response = await dispatcher.http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")


async def _sample_is(dispatcher: RunningDispatcher, name: str, value: float) -> bool:
    return await _sample(dispatcher, name) == value


async def test_health_and_readiness(env: Env) -> None:
    dispatcher = await env.dispatcher()
    assert (await dispatcher.http.get("/health")).json() == {"status": "ok"}
    ready = await dispatcher.http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "scheduler": True}
