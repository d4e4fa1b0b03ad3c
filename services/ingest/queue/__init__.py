"""GET/POST /queue and POST /interrupt."""
