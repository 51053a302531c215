"""Microstate servers: one async gRPC server per microstate, sharing one runtime and one store protocol."""
