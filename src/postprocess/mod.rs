//! Stage: postprocess (arrives with its issue).
