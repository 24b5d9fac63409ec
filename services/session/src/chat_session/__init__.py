"""chat_session package."""
