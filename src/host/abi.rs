//! Our own thin layer over the raw proxy-wasm ABI calls, in place of the SDK's
//! `proxy_wasm::hostcalls`.
//!
//! Why: the SDK 0.2.5 wrappers `panic!` on any status they did not expect and
//! `unwrap` UTF-8 conversions of header names and values (`get_map`,
//! `get_map_value`), so one request carrying a `0xFF` byte in a header killed the
//! VM, and with it every request on that worker. Here every call:
//! - returns `Result<_, HostError>` and never panics, whatever the host answers;
//! - declares its status as a plain `u32` (a status the SDK's enum does not list
//!   would otherwise be an invalid enum value);
//! - hands header names and values back as bytes: deciding what to do with bytes
//!   that are not UTF-8 is the caller's business, not a crash.
//!
//! The one SDK call still used is `proxy_wasm::hostcalls::dispatch_http_call`:
//! the SDK must register the call's token to route the answer back to the calling
//! context, and that registration is private to it. Its inputs are ours (the
//! configured upstream and an etcd request we built), never a client's bytes, and
//! its panicking arm is only reached on a status neither Envoy nor Kong returns.

use std::ptr::{null, null_mut};
use std::time::Duration;

use crate::encoding::header_map::encode_pairs;

/// A status the host returned instead of OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    pub const NOT_FOUND: HostError = HostError(1);
    pub const CAS_MISMATCH: HostError = HostError(8);
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            _ => "unknown status",
        };
        write!(f, "{name} ({})", self.0)
    }
}

const OK: u32 = 0;

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Header maps, as the ABI numbers them.
#[derive(Debug, Clone, Copy)]
pub enum Map {
    RequestHeaders = 0,
    CallResponseHeaders = 6,
}

/// Buffers, as the ABI numbers them.
#[derive(Debug, Clone, Copy)]
pub enum Buffer {
    RequestBody = 0,
    CallResponseBody = 4,
    GrpcReceived = 5,
    PluginConfiguration = 7,
}

#[derive(Debug, Clone, Copy)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

/// Log levels, as the ABI numbers them.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

// The SDK declares the same imports with its own enum types, which share their
// representation (`u32`); the host sees one import either way.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's exported
/// `proxy_on_memory_allocate` (a `Vec<u8>` the SDK forgot).
///
/// # Safety
/// `data` must be null or such an allocation of exactly `size` bytes.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

pub fn log(level: Level, message: &str) {
    // A log line that cannot be written is not worth stopping for.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Milliseconds since the Unix epoch, by the host's clock; 0 if it will not say.
pub fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    match check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) }) {
        Ok(()) => nanos / 1_000_000,
        Err(_) => 0,
    }
}

pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    check(unsafe { proxy_set_tick_period_milliseconds(millis) })
}

/// Up to `max` bytes of a buffer from `start`; empty when the host has none.
pub fn buffer(kind: Buffer, start: usize, max: usize) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, start, max, &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(unsafe { take_host_bytes(data, size) }.unwrap_or_default()),
        Err(HostError::NOT_FOUND) => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// A whole header map in the ABI's encoding, for `header_map::decode_pairs`
/// to read in place: one copy for every header, not two per header.
pub fn header_map_bytes(map: Map) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    check(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) })?;
    Ok(unsafe { take_host_bytes(data, size) }.unwrap_or_default())
}

/// One header's value (the first copy), as bytes; `None` when absent.
pub fn header_value(map: Map, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(unsafe { take_host_bytes(data, size) }),
        Err(HostError::NOT_FOUND) => Ok(None),
        Err(error) => Err(error),
    }
}

pub fn replace_header(map: Map, name: &str, value: &str) -> Result<(), HostError> {
    check(unsafe { proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

pub fn add_header(map: Map, name: &str, value: &str) -> Result<(), HostError> {
    check(unsafe { proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its CAS token (0 when the host gives none).
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match check(status) {
        Ok(()) => Ok(unsafe { take_host_bytes(data, size) }.map(|value| (value, cas))),
        Err(HostError::NOT_FOUND) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes a shared-data value; `cas` 0 means "no token" (see docs/hosts.md for
/// how Envoy and Kong differ on that).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

/// Answers the request locally.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
    let headers = encode_pairs(headers);
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// A host property; `path` segments are joined with NUL as the ABI wants.
/// `None` when the host does not have it.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let serialized = path.join("\0");
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(unsafe { take_host_bytes(data, size) }),
        Err(HostError::NOT_FOUND) => Ok(None),
        Err(error) => Err(error),
    }
}

pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostError> {
    let mut id = 0;
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), HostError> {
    check(unsafe { proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// A `log` backend over `proxy_log` that never panics (the SDK's unwraps the
/// host's status).
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug | log::Level::Trace => Level::Debug,
        };
        log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
