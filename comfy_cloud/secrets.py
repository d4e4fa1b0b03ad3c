"""Sealing of partner-node credentials (`extra_data.api_key_comfy_org` / `auth_token_comfy_org`).

They are split off the job before it is stored, sealed with AES-GCM under SECRET_KEY (the job id is the
associated data, so a sealed blob cannot be moved to another job), unsealed only by the worker that
runs the job, and erased when the job ends. They never appear in logs, queue, history or jobs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_EXTRA_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")


def split_secrets(extra_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(extra_data without the credentials, the credentials)."""
    clean = {k: v for k, v in extra_data.items() if k not in SECRET_EXTRA_KEYS}
    secrets = {k: extra_data[k] for k in SECRET_EXTRA_KEYS if extra_data.get(k)}
    return clean, secrets


class Sealer:
    def __init__(self, secret_key: str) -> None:
        # Derive a fixed-size key so any long passphrase works.
        self._aead = AESGCM(hashlib.sha256(secret_key.encode()).digest())

    def seal(self, job_id: object, secrets: dict[str, str]) -> bytes | None:
        if not secrets:
            return None
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, json.dumps(secrets).encode(), str(job_id).encode())

    def unseal(self, job_id: object, sealed: bytes | None) -> dict[str, str]:
        if not sealed:
            return {}
        plain = self._aead.decrypt(sealed[:12], sealed[12:], str(job_id).encode())
        return json.loads(plain)


def generate_secret_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()
