"""Detection: regions of interest that follow the camera (registration, drift, ROI geometry)."""
