"""Accounts: registration, login and tokens, passwords, profiles, and the rate limits that
protect them."""
