"""PeerSpark RT: the realtime backend of a collaborative learning platform."""

__version__ = "0.1.0"
