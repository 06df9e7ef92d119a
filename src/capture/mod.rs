//! Stage: capture (arrives with its issue).
