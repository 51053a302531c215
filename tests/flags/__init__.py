"""Tests of the feature-flags microstate: the shared evaluator (clients/microstate/client/flags/evaluation.py)
and the server slice (servers/microstate/server/flags/)."""
