"""Generated gRPC code for ``permitgate.v1`` (``make protos``; never edit by hand)."""
