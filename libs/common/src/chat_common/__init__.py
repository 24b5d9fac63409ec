"""chat_common package."""
