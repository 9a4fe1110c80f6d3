"""Pure domain logic: no I/O, no asyncio, never reads the clock (time is passed in)."""
