"""chat_history package."""
