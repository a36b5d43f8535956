"""cgroup core: hierarchy, css lifecycle and reference counting (kernel/cgroup/)."""
