"""``python -m kit.bench``: the kit's own speed and memory targets (see `kit.bench.suite`)."""

from kit.bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
