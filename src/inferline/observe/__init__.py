"""Observability: the fragmentation estimate, alert rules, scrape config, dashboard, and `inferline top`."""
