"""Errors raised by the service clients, translated once at the HTTP boundary (`map_transport_errors`).

* comfy_cloud.errors.AppError
  - ServiceUnavailable (503): no usable answer
    - Unreachable: the request never reached the service (refused, DNS, connect or pool timeout);
      it had no effect, so it is safe to retry or to give the work to someone else
    - NoAnswer: the request was sent but no answer came back (read timeout, dropped connection,
      garbled answer); it may or may not have taken effect
  - UpstreamRejected (502): the service answered with a status the contract does not list
  - per-client errors for the answers the contract does list (e.g. `InstanceFull`, `UnknownCatalogue`)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from comfy_cloud.clients.http import Answer
from comfy_cloud.errors import AppError, ServiceUnavailable


class Unreachable(ServiceUnavailable):
    """The service could not be reached; the request had no effect."""


class NoAnswer(ServiceUnavailable):
    """The request was sent but no answer came; it may have taken effect."""


class UpstreamRejected(AppError):
    """The service answered with an unexpected status."""

    status_code = 502

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


# Failures before a byte of the request left: the peer cannot have acted on it. (Refused, DNS and
# TLS failures are ClientConnectorErrors; ConnectionTimeoutError covers connecting and waiting for a
# free connection.)
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)


@contextmanager
def map_transport_errors(service: str, url: str) -> Iterator[None]:
    try:
        yield
    except _NOT_SENT as exc:
        raise Unreachable(f"{service} at {url} is unreachable: {type(exc).__name__} {exc}") from exc
    except aiohttp.ClientError as exc:
        raise NoAnswer(f"{service} at {url} did not answer: {type(exc).__name__} {exc}") from exc


def rejected(service: str, answer: Answer) -> UpstreamRejected:
    return UpstreamRejected(
        f"{service} answered {answer.status} to {answer.method} {answer.url}: {answer.text[:200]}",
        status=answer.status,
    )
