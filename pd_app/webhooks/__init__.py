"""Webhooks: Goals have none in Pipedrive, so the app derives events from its snapshots and its own
lifecycle, records one delivery per subscribed webhook (`events.emit`), and delivers them signed."""
