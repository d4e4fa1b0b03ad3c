"""Storage errors, typed so that routes can answer them without guessing.

* StorageError (503): the backend failed or did not answer; the operation may be retried.
* ObjectNotFound (404): no object has this key. Retrying does not help, so it is not a StorageError.
* InvalidKey (400): the key is not a content-addressed key; refused before touching the backend,
  which is what keeps path traversal out of LocalStorage.
"""

from __future__ import annotations

from comfy_cloud.errors import BadRequest, NotFound, ServiceUnavailable


class StorageError(ServiceUnavailable):
    """Object storage is unavailable."""


class ObjectNotFound(NotFound):
    """Stored object not found."""


class InvalidKey(BadRequest):
    """Invalid storage key."""
