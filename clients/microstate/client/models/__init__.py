"""Model-registry clients, one module per contract version (`microstate.client.models.v1`)."""
