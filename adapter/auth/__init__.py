"""SMART Backend Services: the authorisation server's services (keys, tokens, client assertions)."""
