# Negative dentries outlive the cgroup whose task made them (the selftests' test_kmem_dead_cgroups).
# Run with: memcgsim shell --design NAME examples/negative-dentries.sh
mkdir parent
echo +memory > parent/cgroup.subtree_control
mkdir parent/child
spawn worker parent/child
stat-missing worker 1000
kill $worker
rmdir parent/child
sleep 1
# page-pinning: 1 dying (the dentries' slab pages pin the child); the others: 0
cat parent/cgroup.stat
cat parent/memory.current
echo 2 > /proc/sys/vm/drop_caches
sleep 1
# the dentries are reclaimed: every design has freed the child now
cat parent/cgroup.stat
