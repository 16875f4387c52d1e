"""Upkeep jobs: the cleanup of expired sessions and invitations, old jobs, unused uploads."""
