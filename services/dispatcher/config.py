"""Settings of the dispatcher service (environment variables; see README "Configuration").

Dispatcher settings are read from `DISPATCHER_<NAME>` (e.g. `DISPATCHER_LEASE_SECONDS`); the poll
interval also from `DISPATCH_POLL_INTERVAL`, the name the services' contract uses. Durations are seconds.
"""

from __future__ import annotations

from typing import Self

from pydantic import AliasChoices, Field, model_validator

from comfy_cloud.config import CommonSettings


def _env(name: str, *more: str) -> AliasChoices:
    # The field name itself stays accepted, so code and tests can pass settings as keyword arguments.
    return AliasChoices(name, f"dispatcher_{name}", *more)


class DispatcherSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8081

    default_user_limit: int = Field(
        default=4,
        ge=1,
        validation_alias=_env("default_user_limit"),
        description="running jobs per user unless users.max_concurrent_jobs says otherwise",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("lease_seconds"),
        description="a job's lease; instances renew it with each heartbeat",
    )
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        validation_alias=_env("heartbeat_interval"),
        description="how often instances are told to heartbeat",
    )
    heartbeat_timeout: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("heartbeat_timeout"),
        description="an instance silent this long is marked lost and its jobs re-queued",
    )
    execution_timeout: float = Field(
        default=1800.0,
        gt=0,
        validation_alias=_env("execution_timeout"),
        description="a job still running this long after its hand-off is interrupted (status timeout)",
    )
    queue_timeout: float | None = Field(
        default=None,
        gt=0,
        validation_alias=_env("queue_timeout"),
        description="a job pending this long after submission ends with status timeout (unset: never)",
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        validation_alias=_env("max_attempts"),
        description="caps each job's own attempt limit (jobs.max_attempts, 3 by default)",
    )
    poll_interval: float = Field(
        default=2.0,
        gt=0,
        validation_alias=_env("poll_interval", "dispatch_poll_interval"),
        description="a scheduling pass runs at least this often, nudged or not",
    )
    reap_interval: float = Field(
        default=1.0,
        gt=0,
        validation_alias=_env("reap_interval"),
        description="how often leases, lost instances and deadlines are checked",
    )
    claim_batch: int = Field(
        default=16,
        ge=1,
        le=1000,
        validation_alias=_env("claim_batch"),
        description="free slots filled by one claim (one scheduling decision)",
    )
    handoff_timeout: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("handoff_timeout"),
        description="read timeout of a hand-off or interrupt call to an instance",
    )
    handoff_concurrency: int = Field(
        default=100,
        ge=1,
        validation_alias=_env("handoff_concurrency"),
        description="hand-offs in flight at once (HTTP connections to instances)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.heartbeat_interval >= self.lease_seconds:
            raise ValueError("DISPATCHER_HEARTBEAT_INTERVAL must be shorter than DISPATCHER_LEASE_SECONDS")
        if self.heartbeat_interval >= self.heartbeat_timeout:
            raise ValueError(
                "DISPATCHER_HEARTBEAT_INTERVAL must be shorter than DISPATCHER_HEARTBEAT_TIMEOUT"
            )
        return self
