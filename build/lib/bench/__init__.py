"""The PeerSpark RT load-test harness (python -m bench ...)."""
