"""Memory management: page_counter, memcontrol (with the seed's mem_cgroup_ptr), slab hooks."""
