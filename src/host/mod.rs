//! The thin glue between the proxy-wasm ABI and the pure logic in the crate root.
//! Only `proxy_wasm::hostcalls` (which return `Result`) are called here: the SDK's
//! `Context` helpers unwrap host errors and would panic in the data plane. Never
//! call `get_log_level`: Kong's ngx_wasm_module declares it with another
//! signature and refuses to load a module that imports it (HOSTS.md).

mod admin_http;
mod etcd_call;
mod http;
mod root;
mod self_service;
mod store;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // With panic = "abort" a panic still kills the VM; say why before it does.
    std::panic::set_hook(Box::new(|info| {
        log::error!("devportal-gate: panic (the VM will stop): {info}");
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GateRoot::default())
    });
}}
