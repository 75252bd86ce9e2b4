"""Scheduler plugins, one module each: filters (NodeReady, NodeUnschedulable, NodeSelector,
NodeResourcesFit) and scores (LeastAllocated). pymaster.scheduler.plugin_registry names them."""
