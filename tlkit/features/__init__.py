"""Features: taps into a base, extraction (local and Beam), linear probes."""
