"""Ports of the kernel's selftests (tools/testing/selftests/) to the model's user space."""
