"""Log sources: each yields `LogRecord`s from one place the kernel log reaches."""
