"""Servers the bench compares the product with (the Socket.IO peer is Node.js, beside this)."""
