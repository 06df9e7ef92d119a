//! Stage: publish (arrives with its issue).
