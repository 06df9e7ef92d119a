//! Stage: drift (arrives with its issue).
