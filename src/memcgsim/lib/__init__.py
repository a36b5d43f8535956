"""Library routines of the kernel's lib/ that the model's interfaces parse input with."""
