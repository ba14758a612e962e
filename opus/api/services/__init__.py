"""What the routers call: one function per use case, taking an ApiContext and plain values."""
