"""`DispatcherClient`: the dispatcher's API as ingest and inference call it (see CONTRIBUTING.md).

One long-lived `httpx.AsyncClient` with explicit timeouts; transport failures become
`ServiceUnavailable` (`Unreachable`/`NoAnswer`), answers the contract lists become typed errors.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from comfy_cloud.clients.errors import map_transport_errors, rejected
from comfy_cloud.errors import Conflict, NotFound, ServiceUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=2.0, read=10.0, write=10.0, pool=5.0)


class UnknownCatalogue(Conflict):
    """The dispatcher does not know this catalogue: PUT it, then register again."""


class InstanceNotRegistered(NotFound):
    """The dispatcher does not know this instance (or marked it lost): register again."""


class JobNotFound(NotFound):
    """The dispatcher knows no such job."""


@dataclass(frozen=True, slots=True)
class InstanceRegistration:
    id: uuid.UUID
    address: str
    capacity: int
    catalogue_hash: str
    comfyui_version: str | None = None
    system_stats: dict[str, Any] | None = None
    features: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "id": str(self.id)}


@dataclass(frozen=True, slots=True)
class RegistrationTerms:
    heartbeat_interval: float
    lease_seconds: float


class DispatcherClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self._nudge_task: asyncio.Task[None] | None = None
        self._nudge_again = False

    async def aclose(self) -> None:
        if self._nudge_task is not None:
            self._nudge_task.cancel()
            await asyncio.gather(self._nudge_task, return_exceptions=True)
        await self._http.aclose()

    async def __aenter__(self) -> DispatcherClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def dispatch(self) -> int:
        """Run a scheduling pass now and wait for it; how many jobs it handed out."""
        response = await self._request("POST", "/dispatch")
        self._expect(response, 200, 202)
        return int(response.json()["assigned"])

    async def nudge(self) -> None:
        """Fire and forget: ask for a scheduling pass without waiting for it. Nudges made while one is in
        flight collapse into one more; a lost nudge only delays work until the dispatcher's next poll."""
        if self._nudge_task is not None and not self._nudge_task.done():
            self._nudge_again = True
            return
        self._nudge_again = False
        self._nudge_task = asyncio.get_running_loop().create_task(self._send_nudges())

    async def _send_nudges(self) -> None:
        while True:
            try:
                await self.dispatch()
            except ServiceUnavailable as exc:
                log.info("dispatcher nudge lost (the poll will catch up): %s", exc)
            except Exception:
                log.warning("dispatcher nudge failed", exc_info=True)
            if not self._nudge_again:
                return
            self._nudge_again = False

    async def put_catalogue(self, catalogue_hash: str, object_info: dict[str, Any]) -> None:
        response = await self._request("PUT", f"/catalogues/{catalogue_hash}", json=object_info)
        self._expect(response, 200, 204)

    async def register(self, registration: InstanceRegistration) -> RegistrationTerms:
        """Raises UnknownCatalogue (409) when the catalogue must be PUT first."""
        response = await self._request("POST", "/instances/register", json=registration.to_json())
        if response.status_code == 409:
            raise UnknownCatalogue(f"catalogue {registration.catalogue_hash} is unknown to the dispatcher")
        self._expect(response, 200)
        body = response.json()
        return RegistrationTerms(float(body["heartbeat_interval"]), float(body["lease_seconds"]))

    async def heartbeat(
        self, instance_id: uuid.UUID, *, healthy: bool, running: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """Renew the leases of `running`; the status of each job still the instance's (a job missing
        from the answer is not: drop it; `cancelling`: interrupt it). Raises InstanceNotRegistered."""
        body = {"healthy": healthy, "running": [str(job_id) for job_id in running]}
        response = await self._request("POST", f"/instances/{instance_id}/heartbeat", json=body)
        if response.status_code == 404:
            raise InstanceNotRegistered(f"instance {instance_id} must register again")
        self._expect(response, 200)
        return {uuid.UUID(job_id): status for job_id, status in response.json()["jobs"].items()}

    async def cancel(self, job_id: uuid.UUID) -> bool:
        """True when the job is cancelled or being cancelled; False when it had already ended."""
        response = await self._request("POST", f"/jobs/{job_id}/cancel")
        if response.status_code == 404:
            raise JobNotFound(f"job {job_id} is unknown to the dispatcher")
        self._expect(response, 200)
        return bool(response.json()["cancelled"])

    async def instances(self) -> list[dict[str, Any]]:
        response = await self._request("GET", "/instances")
        self._expect(response, 200)
        return list(response.json()["instances"])

    async def queue(self) -> dict[str, Any]:
        """Queue depth per status and the jobs waiting for a capability no live instance offers."""
        response = await self._request("GET", "/queue")
        self._expect(response, 200)
        return dict(response.json())

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with map_transport_errors("dispatcher", f"{self.base_url}{path}"):
            return await self._http.request(method, path, **kwargs)

    @staticmethod
    def _expect(response: httpx.Response, *ok: int) -> None:
        if response.status_code in ok:
            return
        if response.status_code >= 500:
            raise ServiceUnavailable(f"dispatcher answered {response.status_code}: {response.text[:200]}")
        raise rejected("dispatcher", response)
