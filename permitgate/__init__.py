"""permitgate: the command line, and the generated gRPC API under ``permitgate.v1``."""
