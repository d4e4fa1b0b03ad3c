"""Response shapes of the file routes (for the OpenAPI document; the bodies are ComfyUI's)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FileType = Literal["input", "output", "temp"]


class UploadResponse(BaseModel):
    name: str = Field(description="the stored name; `name (1).png` when the name held other bytes")
    subfolder: str = Field(description="the subfolder as sent")
    type: FileType


# The multipart body of /upload/image and /upload/mask, documented by hand (the form is parsed in the
# endpoint, under the upload limit).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "type": {"type": "string", "enum": ["input", "temp", "output"], "default": "input"},
                        "subfolder": {"type": "string", "default": ""},
                        "overwrite": {"type": "string", "description": '"true" or "1" replaces the name'},
                        "original_ref": {
                            "type": "string",
                            "description": '/upload/mask only: JSON {"filename", "subfolder"?, "type"?}',
                        },
                    },
                }
            }
        },
    }
}
