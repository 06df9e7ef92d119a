//! How the process ends: errors that carry a `sysexits.h` exit status, so that systemd
//! (`RestartPreventExitStatus=78`) and scripts can tell a configuration that will never work
//! from a fault that a restart may cure.

/// Exit statuses of `edgecam` (BSD `sysexits.h`; anything else that fails exits 1).
pub mod code {
    /// Input data was bad: a file source that ended truncated.
    pub const DATAERR: u8 = 65;
    /// A service the configuration names is unavailable: the source or the broker
    /// (`check-config`, `check-config --connect`), or `http.bind`'s port is in use (`run`).
    pub const UNAVAILABLE: u8 = 69;
    /// An internal fault at run time: a pipeline stage or the MQTT task died.
    pub const SOFTWARE: u8 = 70;
    /// The configuration is wrong (a key, a value, a file it names): restarting cannot help.
    pub const CONFIG: u8 = 78;
}

/// An error with the exit status it ends the process with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0:#}")]
    Config(anyhow::Error),
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
    #[error("{0:#}")]
    Fault(anyhow::Error),
    #[error("{0:#}")]
    Data(anyhow::Error),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Config(_) => code::CONFIG,
            Failure::Unavailable(_) => code::UNAVAILABLE,
            Failure::Fault(_) => code::SOFTWARE,
            Failure::Data(_) => code::DATAERR,
        }
    }
}

/// A configuration error (exit 78).
pub fn config(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Failure::Config(e))
}

/// The exit status for `e`: the [`Failure`] anywhere in its chain, else 1.
pub fn status(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Failure>())
        .map(Failure::code)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn status_is_found_under_context() {
        let e = config(anyhow::anyhow!("mqtt.qos: bad"));
        assert_eq!(status(&e), 78);
        let e = Err::<(), _>(e).context("starting").unwrap_err();
        assert_eq!(status(&e), 78);
        assert!(format!("{e:#}").contains("mqtt.qos: bad"));
        assert_eq!(status(&anyhow::anyhow!("plain")), 1);
        let e = anyhow::Error::new(Failure::Fault(anyhow::anyhow!("stage died")));
        assert_eq!(status(&e), 70);
    }
}
