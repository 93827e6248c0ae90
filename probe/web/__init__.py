"""The web side: one HTTP server for metrics, health, the JSON API and the status page."""
