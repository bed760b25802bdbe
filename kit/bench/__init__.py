"""The kit's own benchmarks (`make bench`): not imported by the library."""
