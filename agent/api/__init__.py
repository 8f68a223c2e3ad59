"""The agent's local HTTP API: health, stats, recordings, clips, exact frames, metrics."""
