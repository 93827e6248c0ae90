"""Notifications on state change: the up/down state per flow and destination, the outbox of
messages in the store, and their delivery through Apprise (docs/notifications.md)."""
