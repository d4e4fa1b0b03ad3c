"""GET /ws (and /api/ws): ComfyUI's WebSocket protocol, fed by the job events of the caller's jobs."""
