"""Operator CLI for the chat backend (``chatctl``)."""
