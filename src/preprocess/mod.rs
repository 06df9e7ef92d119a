//! Stage: preprocessing (colour conversion, resize, normalisation/quantisation).
