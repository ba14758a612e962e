"""Pure domain logic: plain data in, plain data out. No I/O, no clock, no environment."""
