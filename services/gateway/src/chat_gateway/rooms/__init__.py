"""Rooms at one gateway: subscriptions, ordered fan-out, members joining and leaving."""
