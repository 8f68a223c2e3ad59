"""Camera simulator: synthetic CCTV scenes served over RTSP like real firmware."""
