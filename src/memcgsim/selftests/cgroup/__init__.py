"""tools/testing/selftests/cgroup/."""
