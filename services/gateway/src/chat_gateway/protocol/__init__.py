"""Sans-I/O wire codecs: Engine.IO/Socket.IO and the native JSON protocol."""
