//! Test harnesses that start real services on 127.0.0.1 for Ember's tests.
#![warn(missing_docs)]
