"""Conversations: the compact request queued by ingress, thread state, reply state, the worker."""
