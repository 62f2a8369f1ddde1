//! Placeholder; the test host is being written.
