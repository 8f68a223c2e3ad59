"""What the live view gets: the latest frame of a stream (snapshots), the stream itself as
fragmented MP4, and each camera's detection state."""
