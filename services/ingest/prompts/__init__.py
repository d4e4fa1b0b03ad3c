"""POST /prompt and GET /prompt: submitting jobs."""
