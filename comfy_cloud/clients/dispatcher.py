"""`DispatcherClient`: the dispatcher's API as ingest and inference call it (see CONTRIBUTING.md).

One long-lived aiohttp session (opened on first use) with explicit timeouts; transport failures become
`ServiceUnavailable` (`Unreachable`/`NoAnswer`), answers the contract lists become typed errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from comfy_cloud.clients.errors import map_transport_errors, rejected
from comfy_cloud.clients.http import Answer, LazySession, client_timeout, fetch
from comfy_cloud.errors import Conflict, NotFound, ServiceUnavailable

DEFAULT_TIMEOUT = client_timeout(connect=2.0, read=10.0, pool=5.0)


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
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = LazySession(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> DispatcherClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def dispatch(self) -> int:
        """Run a scheduling pass now and wait for it; how many jobs it handed out."""
        answer = await self._request("POST", "/dispatch")
        self._expect(answer, 200, 202)
        return int(answer.json()["assigned"])

    async def put_catalogue(self, catalogue_hash: str, object_info: dict[str, Any]) -> None:
        answer = await self._request("PUT", f"/catalogues/{catalogue_hash}", json=object_info)
        self._expect(answer, 200, 204)

    async def register(self, registration: InstanceRegistration) -> RegistrationTerms:
        """Raises UnknownCatalogue (409) when the catalogue must be PUT first."""
        answer = await self._request("POST", "/instances/register", json=registration.to_json())
        if answer.status == 409:
            raise UnknownCatalogue(f"catalogue {registration.catalogue_hash} is unknown to the dispatcher")
        self._expect(answer, 200)
        body = answer.json()
        return RegistrationTerms(float(body["heartbeat_interval"]), float(body["lease_seconds"]))

    async def heartbeat(
        self, instance_id: uuid.UUID, *, healthy: bool, running: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """Renew the leases of `running`; the status of each job still the instance's (a job missing
        from the answer is not: drop it; `cancelling`: interrupt it). Raises InstanceNotRegistered."""
        body = {"healthy": healthy, "running": [str(job_id) for job_id in running]}
        answer = await self._request("POST", f"/instances/{instance_id}/heartbeat", json=body)
        if answer.status == 404:
            raise InstanceNotRegistered(f"instance {instance_id} must register again")
        self._expect(answer, 200)
        return {uuid.UUID(job_id): status for job_id, status in answer.json()["jobs"].items()}

    async def cancel(self, job_id: uuid.UUID) -> bool:
        """True when the job is cancelled or being cancelled; False when it had already ended."""
        answer = await self._request("POST", f"/jobs/{job_id}/cancel")
        if answer.status == 404:
            raise JobNotFound(f"job {job_id} is unknown to the dispatcher")
        self._expect(answer, 200)
        return bool(answer.json()["cancelled"])

    async def instances(self) -> list[dict[str, Any]]:
        answer = await self._request("GET", "/instances")
        self._expect(answer, 200)
        return list(answer.json()["instances"])

    async def queue(self) -> dict[str, Any]:
        """Queue depth per status and the jobs waiting for a capability no live instance offers."""
        answer = await self._request("GET", "/queue")
        self._expect(answer, 200)
        return dict(answer.json())

    async def _request(self, method: str, path: str, **kwargs: Any) -> Answer:
        url = f"{self.base_url}{path}"
        with map_transport_errors("dispatcher", url):
            return await fetch(self._http.get(), method, url, **kwargs)

    @staticmethod
    def _expect(answer: Answer, *ok: int) -> None:
        if answer.status in ok:
            return
        if answer.status >= 500:
            raise ServiceUnavailable(f"dispatcher answered {answer.status}: {answer.text[:200]}")
        raise rejected("dispatcher", answer)
