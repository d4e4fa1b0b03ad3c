"""The queue as the other services see it: scheduling nudges, cancels, and queue statistics."""
