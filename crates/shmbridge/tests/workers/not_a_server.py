"""A script that is no shmbridge server: its first line is not the handshake."""

print("hello, I am not a server")
