"""One module per command group; each command imports its heavy dependencies in its body."""
