"""Camera health: offline, online and degraded events from per-stream stats; recording gaps."""
