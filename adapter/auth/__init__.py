"""Who may do what: SMART Backend Services tokens, scopes, site segregation."""
