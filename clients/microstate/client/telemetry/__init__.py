"""Clients of the telemetry microstate, one module per contract version (`microstate.client.telemetry.v1`)."""
