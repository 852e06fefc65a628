//! HTTP/2 settings for HBONE, with ztunnel's defaults.

use std::time::Duration;

/// One mebibyte.
const MIB: u32 = 1024 * 1024;

/// The smallest SETTINGS_MAX_FRAME_SIZE HTTP/2 allows.
pub const MIN_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE HTTP/2 allows.
pub const MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window HTTP/2 allows.
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Why settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A window is 0 or above 2^31-1.
    #[error("{which} window {size} is outside 1..=2147483647 (RFC 9113 section 6.9.1)")]
    Window {
        /// `stream` or `connection`.
        which: &'static str,
        /// The size given.
        size: u32,
    },
    /// The frame size is outside 16384..=16777215.
    #[error("max frame size {size} is outside 16384..=16777215 (RFC 9113 section 6.5.2)")]
    FrameSize {
        /// The size given.
        size: u32,
    },
    /// The connection window is smaller than a stream window.
    #[error(
        "connection window {connection} is smaller than the stream window {stream}; one stream could then stall \
         every other (ztunnel uses 4x)"
    )]
    ConnectionWindowTooSmall {
        /// The connection window.
        connection: u32,
        /// The stream window.
        stream: u32,
    },
    /// A limit that must be positive is 0.
    #[error("{which} must be greater than 0")]
    Zero {
        /// The setting.
        which: &'static str,
    },
    /// The keepalive timeout is not longer than nothing.
    #[error("keepalive timeout must be greater than 0")]
    KeepaliveTimeout,
}

/// HTTP/2 settings of HBONE connections (both ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// Initial stream flow-control window: 4 MiB.
    pub stream_window: u32,
    /// Initial connection flow-control window: 16 MiB (4x the stream window).
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE: 1 MiB.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS a server advertises: 200.
    pub server_max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE a client advertises: 16 KiB.
    pub client_max_header_list: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE a server advertises: 64 KiB.
    pub server_max_header_list: u32,
    /// Most bytes a client buffers per stream before waiting for window: 4 MiB (the stream window).
    pub client_max_send_buffer: u32,
    /// Most bytes a server buffers per stream before waiting for window: 400 KiB.
    pub server_max_send_buffer: u32,
    /// PING interval on an established connection: 10 s.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed: 20 s.
    pub keepalive_timeout: Duration,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            stream_window: 4 * MIB,
            connection_window: 16 * MIB,
            max_frame_size: MIB,
            server_max_concurrent_streams: 200,
            client_max_header_list: 16 * 1024,
            server_max_header_list: 64 * 1024,
            client_max_send_buffer: 4 * MIB,
            server_max_send_buffer: 400 * 1024,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl H2Settings {
    /// Checks the settings against HTTP/2's limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (which, size) in [("stream", self.stream_window), ("connection", self.connection_window)] {
            if size == 0 || size > MAX_WINDOW_SIZE {
                return Err(SettingsError::Window { which, size });
            }
        }
        if self.connection_window < self.stream_window {
            return Err(SettingsError::ConnectionWindowTooSmall {
                connection: self.connection_window,
                stream: self.stream_window,
            });
        }
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&self.max_frame_size) {
            return Err(SettingsError::FrameSize { size: self.max_frame_size });
        }
        for (which, value) in [
            ("server max concurrent streams", self.server_max_concurrent_streams),
            ("client max header list size", self.client_max_header_list),
            ("server max header list size", self.server_max_header_list),
            ("client max send buffer", self.client_max_send_buffer),
            ("server max send buffer", self.server_max_send_buffer),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero { which });
            }
        }
        if self.keepalive_interval.is_zero() {
            return Err(SettingsError::Zero { which: "keepalive interval" });
        }
        if self.keepalive_timeout.is_zero() {
            return Err(SettingsError::KeepaliveTimeout);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ztunnel_defaults() {
        let s = H2Settings::default();
        assert_eq!(s.stream_window, 4_194_304);
        assert_eq!(s.connection_window, 16_777_216);
        assert_eq!(s.max_frame_size, 1_048_576);
        assert_eq!(s.server_max_concurrent_streams, 200);
        assert_eq!(s.client_max_header_list, 16_384);
        assert_eq!(s.server_max_header_list, 65_536);
        assert_eq!(s.server_max_send_buffer, 409_600);
        assert_eq!(s.keepalive_interval, Duration::from_secs(10));
        assert_eq!(s.keepalive_timeout, Duration::from_secs(20));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn limits_are_checked() {
        let base = H2Settings::default();
        let bad = H2Settings { max_frame_size: 1024, ..base };
        assert_eq!(bad.validate(), Err(SettingsError::FrameSize { size: 1024 }));
        let bad = H2Settings { stream_window: 1 << 31, connection_window: u32::MAX, ..base };
        assert!(matches!(bad.validate(), Err(SettingsError::Window { which: "stream", .. })));
        let bad = H2Settings { connection_window: MIB, ..base };
        assert!(matches!(bad.validate(), Err(SettingsError::ConnectionWindowTooSmall { .. })));
        let bad = H2Settings { server_max_concurrent_streams: 0, ..base };
        assert!(matches!(bad.validate(), Err(SettingsError::Zero { .. })));
        let bad = H2Settings { keepalive_timeout: Duration::ZERO, ..base };
        assert_eq!(bad.validate(), Err(SettingsError::KeepaliveTimeout));
    }
}
