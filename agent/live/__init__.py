"""What the live view gets: the latest decoded frame of a stream (snapshots)."""
