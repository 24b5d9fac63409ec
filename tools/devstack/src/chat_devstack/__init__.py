"""chat_devstack package."""
