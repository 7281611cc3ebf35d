"""Exchange between systems: Bulk Data export (and, later, site-to-site exchange)."""
