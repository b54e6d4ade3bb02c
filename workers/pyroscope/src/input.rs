//! The running `pyroscope` input.

/// The input and feed name.
pub const INPUT_NAME: &str = "pyroscope";

/// One `[[inputs.pyroscope]]` instance, ready to run.
pub struct PyroscopeInput;
