"""Study pods: membership, roles, invitations, bans and pod analytics."""
