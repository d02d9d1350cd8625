//! End-to-end tests and examples live in `tests/` and `examples/` of this package; this library is empty on purpose.
