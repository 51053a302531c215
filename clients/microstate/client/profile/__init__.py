"""Clients of the user profile microstate, one subpackage per contract version (`v1`, `v2`)."""
