"""Typed HTTP clients between the services, one per downstream service."""

from comfy_cloud.clients.dispatcher import (
    DispatcherClient,
    InstanceNotRegistered,
    InstanceRegistration,
    JobNotFound,
    RegistrationTerms,
    UnknownCatalogue,
)
from comfy_cloud.clients.errors import NoAnswer, Unreachable, UpstreamRejected
from comfy_cloud.clients.inference import InferenceClient, InstanceFull

__all__ = [
    "DispatcherClient",
    "InferenceClient",
    "InstanceFull",
    "InstanceNotRegistered",
    "InstanceRegistration",
    "JobNotFound",
    "NoAnswer",
    "RegistrationTerms",
    "UnknownCatalogue",
    "Unreachable",
    "UpstreamRejected",
]
