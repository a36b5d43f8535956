"""Runtime and primitives: scheduler, heap, RCU, percpu_ref, locks, lists, workqueues."""
