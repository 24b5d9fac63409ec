"""What a gateway does for users rather than rooms: their streams, read marks and inbox."""
