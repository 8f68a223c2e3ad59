"""Find cameras on the agent's subnets with ONVIF WS-Discovery."""
