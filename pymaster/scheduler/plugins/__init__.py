"""Scheduler plugins, one module each (filters, scores, or both); pymaster.scheduler.plugin_registry
names them and holds the default profile."""
