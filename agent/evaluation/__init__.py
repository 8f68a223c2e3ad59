"""`camfleet eval`: simulated scenes through the agent's detection, scored against the
simulator's ground truth."""
