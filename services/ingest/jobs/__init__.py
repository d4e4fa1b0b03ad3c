"""The jobs API (/api/jobs...), Cloud's job status, and history (ComfyUI's /history, Cloud's history_v2)."""
