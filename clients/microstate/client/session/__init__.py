"""Clients of the session microstate, one module per contract version (`microstate.client.session.v1`)."""
