"""GDPR subject requests across every microstate: the coordinator (coordinator.py), the export bundle
(bundle.py) and `microstate gdpr export|erase SUBJECT` (cli.py). What each microstate holds is its own
declaration (kit/subjects.py)."""
