"""Repositories: every query the services run. Each takes the session it works in and never commits."""
