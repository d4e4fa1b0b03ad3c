"""Typed errors that carry an HTTP status.

* AppError (500 unless a subclass says otherwise)
  - NotFound (404)
  - Conflict (409)
    - database.job_states.InvalidJobTransition
  - BadRequest (400)
  - ServiceUnavailable (503): a dependency (database, worker, dispatcher) did not answer

Each service renders them in the error style of the route it imitates; an expected conflict is never a 500.
"""

from __future__ import annotations


class AppError(Exception):
    status_code = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip()
        super().__init__(self.message)


class NotFound(AppError):
    """Not found."""

    status_code = 404


class Conflict(AppError):
    """Conflict."""

    status_code = 409


class BadRequest(AppError):
    """Bad request."""

    status_code = 400


class ServiceUnavailable(AppError):
    """Service unavailable."""

    status_code = 503
