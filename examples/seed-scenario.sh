# The seed scenario (DESIGN.md §1): kernel objects outlive the cgroup that allocated them.
# Run with: memcgsim shell [--design NAME] examples/seed-scenario.sh
# On a real machine: cd /sys/fs/cgroup first, and let a test module do the `alloc`.
mkdir a
echo +memory > a/cgroup.subtree_control
mkdir a/b
spawn worker a/b
alloc worker kmalloc-64 1000 as objs
echo $worker > cgroup.procs
rmdir a/b
# b is dying: killed, its offline waits for a grace period
cat a/cgroup.stat
settle
# memcg-ptr: b is freed (0 dying) while its 1000 objects stay charged to a
cat a/cgroup.stat
cat a/memory.current
