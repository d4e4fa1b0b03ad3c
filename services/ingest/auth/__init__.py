"""Request authentication for ingest: credential extraction, Firebase ID tokens."""

from services.ingest.auth.firebase import (
    Credentials,
    FirebaseIdentity,
    FirebaseTokenVerifier,
    extract_credentials,
    looks_like_api_key,
)

__all__ = [
    "Credentials",
    "FirebaseIdentity",
    "FirebaseTokenVerifier",
    "extract_credentials",
    "looks_like_api_key",
]
