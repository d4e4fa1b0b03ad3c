"""ComfyUI protocol knowledge shared by the gateway, the worker and the simulator (no I/O, no framework).

- `validation`: POST /prompt checks and prompt validation with ComfyUI's exact error bodies.
- `nodedefs`: node classes as validation sees them (object_info entries, V3 dynamic inputs, validators).
- `frames`: binary WebSocket frames (previews and progress text).
- `jobs`: the jobs API (query parsing, job items, outputs summary).
"""
