"""Workloads that drive the model: the seed scenario, and (later) cgroup churn workloads."""
