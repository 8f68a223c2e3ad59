"""RTSP/RTP/RTCP/SDP protocol logic, free of sockets (sans-IO)."""
