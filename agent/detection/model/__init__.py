"""camfleet's own anomaly models: a feature extractor (.tflite) plus per-ROI statistics, packed
with a manifest into one artifact that an agent checks before it scores anything."""
