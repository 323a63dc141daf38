"""The wire schemas the server and the client share; imports nothing of either."""
