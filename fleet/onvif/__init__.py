"""ONVIF bits camfleet speaks: WS-Discovery."""
