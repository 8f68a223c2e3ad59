"""camfleet edge agent: owns the camera connections, stamps, records and detects."""
