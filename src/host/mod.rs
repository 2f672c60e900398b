//! The thin glue between the proxy-wasm ABI and the pure logic in the crate root.
//! Host calls go through `abi`, our own layer over the raw imports, which returns
//! `Result` and cannot panic (the SDK's wrappers panic on unexpected statuses and
//! on header bytes that are not UTF-8). Never call `get_log_level`: Kong's
//! ngx_wasm_module declares it with another signature and refuses to load a
//! module that imports it (docs/hosts.md).

mod abi;
mod etcd_call;
mod events;
mod http;
mod respond;
mod root;
mod shared;
mod store;

static LOGGER: abi::HostLogger = abi::HostLogger;

proxy_wasm::main! {{
    // Our logger, not the SDK's: the SDK's unwraps the host's status.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // With panic = "abort" a panic still kills the VM; say why before it does.
    std::panic::set_hook(Box::new(|info| {
        log::error!("devportal-gate: panic (the VM will stop): {info}");
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GateRoot::default())
    });
}}
