"""Pure helpers: output and input names, credential scrubbing."""

from __future__ import annotations

import uuid

import pytest

from services.inference.names import FileRef, input_name, output_name, parse_input_name
from services.inference.relay import REDACTED, Redactor

JOB = uuid.UUID("1a2b3c4d-0000-4000-8000-000000000000")


@pytest.mark.parametrize(
    ("comfy", "user"),
    [
        ("ComfyUI_00001_.png", "ComfyUI_00001__1a2b3c4d.png"),
        ("clip.mp4", "clip_1a2b3c4d.mp4"),
        ("archive.tar.gz", "archive.tar_1a2b3c4d.gz"),
        ("noext", "noext_1a2b3c4d"),
        (".hidden", ".hidden_1a2b3c4d"),
    ],
)
def test_output_names_are_unique_per_job(comfy: str, user: str) -> None:
    assert output_name(comfy, JOB) == user


@pytest.mark.parametrize(
    ("value", "ref"),
    [
        ("photo.png", FileRef("input", "", "photo.png")),
        ("sub/dir/photo.png", FileRef("input", "sub/dir", "photo.png")),
        ("photo.png [output]", FileRef("output", "", "photo.png")),
        ("a/b.png [temp]", FileRef("temp", "a", "b.png")),
        ("x.png [input]", FileRef("input", "", "x.png")),
    ],
)
def test_input_names_parse_like_comfyui(value: str, ref: FileRef) -> None:
    assert parse_input_name(value) == ref


def test_inputs_are_content_addressed() -> None:
    digest = "ab" * 32
    assert input_name(digest, "Photo.PNG") == "ab" * 16 + ".png"
    assert input_name(digest, "no extension") == "ab" * 16
    assert input_name(digest, "evil.p/../ng") == "ab" * 16


def test_redactor_scrubs_credentials_everywhere() -> None:
    token = "tok-0123456789abcdef"
    redact = Redactor([token, "short"])
    data = {"current_inputs": {"auth_token_comfy_org": [token]}, "msg": f"Bearer {token} failed", "n": 3}
    assert redact(data) == {
        "current_inputs": {"auth_token_comfy_org": [REDACTED]},
        "msg": f"Bearer {REDACTED} failed",
        "n": 3,
    }
    assert redact({"text": "a short word"}) == {"text": "a short word"}  # too short to be a secret
    assert Redactor([])(data) is data
