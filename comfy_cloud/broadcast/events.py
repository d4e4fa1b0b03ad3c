"""The job event envelope that travels from the services to the ingest WebSockets.

Inference relays every ComfyUI message of a job as one `JobEvent`; the dispatcher and ingest publish
`JOB_STATUS` events when a job changes state. Ingest fans each event out to all sockets of `user_id`
(never by client id) and turns it back into ComfyUI's wire format for each socket.

`seq` orders the events of one job; a broadcaster delivers the events it is given in publish order.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

# ComfyUI JSON messages keep their own `type` ("executing", "progress", ...). Binary frames and
# internal notices use these types.
PREVIEW = "cc.preview"  # blob = image bytes; data = ComfyUI preview metadata (node_id, image_type, ...)
PROGRESS_TEXT = "cc.progress_text"  # blob = UTF-8 text; data = {"node_id": ...}
JOB_STATUS = "cc.job_status"  # data = {"status": <JobStatus value>}; ingest answers with `status`

# One compact encoder for every event: json.dumps(separators=...) builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(slots=True)
class JobEvent:
    user_id: str
    job_id: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    blob: bytes | None = None
    seq: int = 0

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "u": self.user_id,
            "j": self.job_id,
            "t": self.type,
            "d": self.data,
            "s": self.seq,
        }
        if self.blob is not None:
            body["b"] = base64.b64encode(self.blob).decode("ascii")
        return _encode(body)

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobEvent:
        body = json.loads(raw)
        blob = base64.b64decode(body["b"]) if "b" in body else None
        return cls(
            user_id=body["u"],
            job_id=body["j"],
            type=body["t"],
            data=body.get("d") or {},
            blob=blob,
            seq=body.get("s", 0),
        )
