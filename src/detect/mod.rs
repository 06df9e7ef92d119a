//! Stage: detection (the int8 engine, and the SSD box decoding).
