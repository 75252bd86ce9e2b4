"""Scheduler plugins, one module each: filters (NodeReady, NodeUnschedulable, NodeSelector,
NodeResourcesFit) and scores (LeastAllocated). pymaster.scheduler.registry names them."""
