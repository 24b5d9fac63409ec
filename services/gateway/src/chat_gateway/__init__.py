"""chat_gateway package."""
